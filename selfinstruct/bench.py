"""`make bench`: speed and memory of generate, tune and probe, as ratios against naive baselines measured in
the same script on the same machine, model and corpus. BENCH_QUICK=1 for a short pass (fewer windows and
steps, no vLLM start-up and no scale test). The generate half is here; tune, load and probe in bench_tune.py.
BENCH_LARGE_CORPUS names the corpus of the scale test (default: the surgery manual under ../shared).

Training runs and model loads each go in a fresh process, so every peak RSS is that configuration's own."""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import re
import sys
import time
import traceback
from pathlib import Path

QUICK = os.environ.get("BENCH_QUICK") == "1"
OUT = Path("outputs/bench")
SAMPLE = Path("corpora/harbour_of_velmoor.txt")
LARGE = Path(os.environ.get("BENCH_LARGE_CORPUS", "../shared/corpora/manual_of_surgery_vol1.txt"))
NAIVE_ASK = "Write 4 questions about the text below, each followed by its answer, as lines 'Q: ...' and 'A: ...'."


def log(name: str, value, unit: str = "") -> None:
    print(f"{name}: {value:.3f}{unit}" if isinstance(value, float) else f"{name}: {value}{unit}", flush=True)


class Recorder:
    """Wraps an engine, remembering every call, so the same prompts can be replayed raw."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []
        self.tokenizer, self.record, self.name = engine.tokenizer, engine.record, engine.name

    @property
    def generated_tokens(self):
        return self.engine.generated_tokens

    def generate(self, prompts, sampling):
        self.calls.append((prompts, sampling))
        return self.engine.generate(prompts, sampling)

    def base_only(self):
        return self.engine.base_only()


def bench_pipeline(engine, corpus: Path, windows: int, out: Path) -> dict:
    """selfinstruct generate on `windows` windows with an already started engine, then the engine alone on
    exactly the prompts the pipeline sent: the difference is the pipeline's own cost."""
    from . import generate
    from .config import GenerateConfig, UserError
    from .runs import Manifest

    recorder = Recorder(engine)
    config = GenerateConfig(corpus=str(corpus), out=str(out), max_windows=windows, overwrite=True)
    tokens, start = engine.generated_tokens, time.perf_counter()
    try:
        generate.run(config, generator=recorder)
    except UserError:
        pass  # windows that yield no pair are still a measurement of cost
    seconds = time.perf_counter() - start
    generated = engine.generated_tokens - tokens
    summary = Manifest.read(out).summary
    start = time.perf_counter()
    for prompts, sampling in recorder.calls:
        engine.generate(prompts, sampling)
    raw = time.perf_counter() - start
    return {"windows": windows, "seconds": seconds, "windows_per_s": windows / seconds,
            "pairs": summary["pairs"], "pairs_per_min": 60 * summary["pairs"] / seconds,
            "tokens_per_s": generated / seconds, "raw_engine_seconds": raw, "overhead": 1 - raw / seconds,
            "processed_tokens_per_s": (sum(count_tokens(engine.tokenizer, p) for p, _ in recorder.calls)
                                       + generated) / seconds,
            "calls": len(recorder.calls), "prompts": sum(len(p) for p, _ in recorder.calls)}


def bench_naive(model_path: Path, corpus: Path, windows: int) -> dict:
    """The way the original notebooks did it: transformers' text-generation pipeline, one window per call,
    free-form 'Q: ... A: ...' output, parsed with a regex and nothing filtered."""
    from transformers import pipeline

    from .backends import chat_prompt
    from .corpus import read_corpus, split_windows
    from .models import load_model, load_tokenizer

    tokenizer = load_tokenizer(model_path)
    model, _ = load_model(model_path, "nf4")
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    chunks = split_windows(read_corpus(corpus), tokenizer)[:windows]
    prompts = [chat_prompt(tokenizer, [{"role": "user", "content": f"{NAIVE_ASK}\n\n{w.text}"}]) for w in chunks]
    start = time.perf_counter()
    texts = [generator(prompt, max_new_tokens=256, do_sample=False, return_full_text=False)[0]["generated_text"]
             for prompt in prompts]
    seconds = time.perf_counter() - start  # generation only: counting below is not charged to the baseline
    tokens, read = count_tokens(tokenizer, texts), count_tokens(tokenizer, prompts)
    pairs = sum(len(re.findall(r"Q:\s*\S.*?\n\s*A:\s*\S", text, re.S)) for text in texts)
    return {"windows": len(chunks), "seconds": seconds, "windows_per_s": len(chunks) / seconds, "pairs": pairs,
            "pairs_per_min": 60 * pairs / seconds, "tokens_per_s": tokens / seconds,
            "processed_tokens_per_s": (read + tokens) / seconds}


def count_tokens(tokenizer, texts: list[str]) -> int:
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def in_child(function, *args):
    """Run `function(*args)` in a fresh process (not a pool's daemon: vLLM starts workers of its own)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_child, args=(results, function, args))
    child.start()
    while True:
        try:
            ok, value = results.get(timeout=5)
            break
        except queue.Empty:
            if not child.is_alive():
                raise RuntimeError(f"{function.__name__} died with exit code {child.exitcode}") from None
    child.join(timeout=60)
    if child.is_alive():  # an engine's worker can keep it from exiting once its result is in
        child.terminate()
    if not ok:
        raise RuntimeError(f"{function.__name__} failed in its process:\n{value}")
    return value


def _child(results, function, args) -> None:
    try:
        results.put((True, function(*args)))
    except Exception:
        results.put((False, traceback.format_exc()))


def main() -> int:
    from .backends import vllm_available
    from .backends.hf import HFGenerator
    from .bench_tune import bench_probe, load_in_child, train_in_child
    from .models import resolve_model

    OUT.mkdir(parents=True, exist_ok=True)
    model = resolve_model("default").path
    windows, steps = (1, 2) if QUICK else (8, 16)
    results = {"machine": machine(), "quick": QUICK, "windows": windows, "train_steps": steps}

    results["naive"] = bench_naive(model, SAMPLE, windows)
    report("naive pipeline", results["naive"])
    results["transformers"] = bench_pipeline(HFGenerator(model), SAMPLE, windows, OUT / "gen-transformers")
    report("selfinstruct transformers", results["transformers"])
    if vllm_available() and not QUICK:  # in a child process: its engine's workers must be gone before training is timed
        results.update(in_child(bench_vllm, str(model), windows))

    run_dir = str(OUT / "gen-transformers")
    for kind in ("trl-defaults", "selfinstruct", "selfinstruct-fp32"):
        adapter = str(OUT / "adapter") if kind == "selfinstruct" else None
        results[f"tune_{kind}"] = in_child(train_in_child, kind, str(model), run_dir, steps, adapter)
        report(f"tune {kind}", results[f"tune_{kind}"])
    for how in ("nf4", "bf16", "fp32"):
        results[f"load_{how}"] = in_child(load_in_child, str(model), how)
        report(f"load {how}", results[f"load_{how}"])
    results["probe"] = bench_probe(model, OUT / "adapter", OUT / "gen-transformers", 8 if QUICK else 24)
    report("probe tuned", results["probe"])
    results["ratios"] = ratios(results)
    (OUT / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, OUT / "bench.png")
    for name, value in results["ratios"].items():
        shown = "n/a (the baseline produced none)" if value is None else f"{value:.2f}"
        print(f"{name}: {shown}{'x' if 'speedup' in name and value is not None else ''}")
    return 0


def bench_vllm(model: str, windows: int) -> dict:
    """The vLLM engine: start-up, the pipeline against the naive way, and the same engine at two corpus sizes
    (the large real corpus when ../shared has it) to show that cost grows linearly once started."""
    from .backends.vllm import VLLMGenerator

    start = time.perf_counter()
    engine = VLLMGenerator(model)
    out = {"vllm_startup_s": time.perf_counter() - start}
    log("vllm startup", out["vllm_startup_s"], " s")
    out["vllm"] = bench_pipeline(engine, SAMPLE, windows, OUT / "gen-vllm")
    report("selfinstruct vllm", out["vllm"])
    corpus = LARGE if LARGE.is_file() else SAMPLE
    sizes = (2, 4) if QUICK else (8, 32)
    out["scale"] = {"corpus": str(corpus)}
    for n in sizes:
        out["scale"][str(n)] = bench_pipeline(engine, corpus, n, OUT / f"scale-{n}")
        report(f"scale {n} windows", out["scale"][str(n)])
    return out


def publish(label: str, results: dict, path: Path) -> None:
    """One line a result on stdout, and all of them in `path` (bench_serve, bench_ray)."""
    from .runs import write_json

    for name, figures in results.items():
        print(f"{label} {name}: {figures}", flush=True)
    write_json(path, results)


def report(label: str, figures: dict) -> None:
    for key, value in figures.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            log(f"{label} {key}", value)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None  # a baseline that produced nothing has no ratio


def ratios(r: dict) -> dict:
    best, naive = r.get("vllm", r["transformers"]), r["naive"]
    ours, trl, fp32 = r["tune_selfinstruct"], r["tune_trl-defaults"], r["tune_selfinstruct-fp32"]
    # Speed is generated tokens/s on the same model and corpus. Usable pairs per minute are reported too, but
    # the naive way got no parseable pair out of the embedded model, so that ratio is often undefined.
    out = {"generate_speedup_vs_naive": _ratio(best["tokens_per_s"], naive["tokens_per_s"]),
           "generate_transformers_speedup_vs_naive": _ratio(r["transformers"]["tokens_per_s"], naive["tokens_per_s"]),
           "generate_processed_tokens_speedup_vs_naive": _ratio(best["processed_tokens_per_s"],
                                                               naive["processed_tokens_per_s"]),
           "generate_windows_speedup_vs_naive": _ratio(best["windows_per_s"], naive["windows_per_s"]),
           "generate_pairs_per_min_ratio_vs_naive": _ratio(best["pairs_per_min"], naive["pairs_per_min"]),
           "pipeline_overhead_share": best["overhead"],
           "tune_speedup_vs_trl_defaults": _ratio(ours["tokens_per_s"], trl["tokens_per_s"]),
           "tune_peak_rss_ratio_vs_trl_defaults": _ratio(ours["peak_rss_mb"], trl["peak_rss_mb"]),
           "tune_peak_rss_ratio_vs_fp32": _ratio(ours["peak_rss_mb"], fp32["peak_rss_mb"]),
           "weights_nf4_vs_fp32": _ratio(r["load_nf4"]["weights_mb"], r["load_fp32"]["weights_mb"]),
           "weights_nf4_vs_bf16": _ratio(r["load_nf4"]["weights_mb"], r["load_bf16"]["weights_mb"])}
    if "scale" in r:
        small, large = (r["scale"][k] for k in list(r["scale"])[1:])
        out["scale_seconds_per_window_ratio_large_vs_small"] = (large["seconds"] / large["windows"]) / (
            small["seconds"] / small["windows"])
    return out


def machine() -> dict:
    import platform

    import torch

    from .models import cpu_has_bf16

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "avx512_bf16": cpu_has_bf16(), "python": sys.version.split()[0]}


def chart(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    engines = [k for k in ("naive", "transformers", "vllm") if k in r]
    bars = left.bar(engines, [r[k]["pairs_per_min"] for k in engines], color=["#9aa5b1", "#6c8ebf", "#2f6fb0"])
    left.bar_label(bars, fmt="%.1f")
    left.set_title("generate: QA pairs per minute")
    kinds = ["trl-defaults", "selfinstruct", "selfinstruct-fp32"]
    speed = [r[f"tune_{k}"]["tokens_per_s"] for k in kinds]
    rss = [r[f"tune_{k}"]["peak_rss_mb"] / 1024 for k in kinds]
    xs = range(len(kinds))
    b1 = right.bar([x - 0.2 for x in xs], speed, 0.4, label="tokens/s", color="#2f6fb0")
    twin = right.twinx()
    b2 = twin.bar([x + 0.2 for x in xs], rss, 0.4, label="peak RSS (GiB)", color="#e3a33b")
    right.bar_label(b1, fmt="%.0f")
    twin.bar_label(b2, fmt="%.1f")
    right.set_xticks(list(xs), ["trl defaults", "selfinstruct NF4", "fp32 LoRA"])
    right.set_ylim(0, max(speed) * 1.25)
    twin.set_ylim(0, max(rss) * 1.25)
    right.set_title("tune: train tokens/s and peak RSS")
    right.legend(handles=[b1, b2], frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    for ax in (left, right, twin):
        ax.spines[["top"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
