"""`make bench`: speed and memory of generate, tune and probe, as ratios against naive baselines measured in
the same script on the same machine, model and corpus. BENCH_QUICK=1 for a short pass (fewer windows and
steps, no vLLM start-up and no scale test). The generate half is here; tune, load and probe in bench_tune.py.
BENCH_LARGE_CORPUS names the corpus of the scale test (default: the surgery manual under ../shared).
`python -m selfinstruct.bench generate` runs the generate half alone (outputs/bench/bench-generate.json),
each pipeline run with its breakdown: where the seconds went.

Training runs and model loads each go in a fresh process, so every peak RSS is that configuration's own."""

from __future__ import annotations

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
    """Wraps an engine, timing every call in place under the name of the pipeline step that made it."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []
        self.tokenizer, self.record, self.name = engine.tokenizer, engine.record, engine.name

    @property
    def generated_tokens(self):
        return self.engine.generated_tokens

    def generate(self, prompts, sampling):
        step = sys._getframe(1).f_code.co_name  # generate_and_parse (questions) or read_back (the round trip)
        start = time.perf_counter()
        texts = self.engine.generate(prompts, sampling)
        self.calls.append({"step": step, "prompts": prompts, "seconds": time.perf_counter() - start})
        return texts

    def base_only(self):
        return self.engine.base_only()


# Where a generate run spends its time: the engine's calls by the step that made them (timed in place: a
# replay of the same prompts would find vLLM's prefix cache warm), and the pipeline's own stages as cProfile
# sees them. Stage -> (module, function) whose cumulative time it is.
STAGES = {"open (corpus, windows, entities, resume)": ("generate_run.py", "open"),
          "draft without the engine (facts, templates, filters, restatements)": ("generate.py", "draft"),
          "settle (near-duplicates, refusals, absence checks)": ("generate.py", "settle"),
          "commit (run-folder writes)": ("generate_run.py", "commit"),
          "finish (summary, manifest)": ("generate_run.py", "finish")}
# Inside the engine calls and the stages above, so reported beside them, not added to them.
TOKENISATION = ("~", "<method 'encode_batch' of 'tokenizers.Tokenizer' objects>")


def bench_pipeline(engine, corpus: Path, windows: int, out: Path, model: str = "default") -> dict:
    """selfinstruct generate on `windows` windows with an already started engine, and where its time went."""
    import cProfile
    import pstats

    from . import generate
    from .config import GenerateConfig, UserError
    from .runs import Manifest

    recorder = Recorder(engine)
    config = GenerateConfig(corpus=str(corpus), out=str(out), model=model, max_windows=windows, overwrite=True)
    tokens, start, profile = engine.generated_tokens, time.perf_counter(), cProfile.Profile()
    try:
        profile.runcall(generate.run, config, generator=recorder)
    except UserError:
        pass  # windows that yield no pair are still a measurement of cost
    seconds = time.perf_counter() - start
    generated = engine.generated_tokens - tokens
    summary = Manifest.read(out).summary
    engine_seconds = sum(call["seconds"] for call in recorder.calls)
    return {"windows": windows, "seconds": seconds, "windows_per_s": windows / seconds,
            "pairs": summary["pairs"], "pairs_per_min": 60 * summary["pairs"] / seconds,
            "tokens_per_s": generated / seconds, "engine_seconds": engine_seconds,
            "overhead": 1 - engine_seconds / seconds,
            "processed_tokens_per_s": (sum(count_tokens(engine.tokenizer, c["prompts"]) for c in recorder.calls)
                                       + generated) / seconds,
            "calls": len(recorder.calls), "prompts": sum(len(c["prompts"]) for c in recorder.calls),
            "breakdown": breakdown(recorder.calls, pstats.Stats(profile), seconds, engine_seconds)}


def breakdown(calls: list[dict], stats, seconds: float, engine_seconds: float) -> dict:
    """Seconds per stage of one run: the engine by calling step, then the pipeline's stages (cProfile's
    cumulative time, the engine's share taken out of the stage that called it)."""
    out = {}
    for call in calls:
        name = "engine: " + {"generate_and_parse": "writing questions", "read_back": "round trip"}.get(
            call["step"], call["step"])
        out[name] = out.get(name, 0.0) + call["seconds"]
    cumulative = {(Path(file).name, function): row[3] for (file, _, function), row in stats.stats.items()}
    for stage, key in STAGES.items():
        out[stage] = cumulative.get(key, 0.0)
    out["draft without the engine (facts, templates, filters, restatements)"] -= engine_seconds
    out["other (engine start-up not included)"] = seconds - sum(out.values())
    out["tokenisation (prompts in, texts out)"] = cumulative.get(TOKENISATION, 0.0)
    return out


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


def main(argv: list[str] | None = None) -> int:
    """`python -m selfinstruct.bench [generate]`: everything, or only the generate half (naive, transformers,
    vLLM and the scale test), which is what most pipeline changes need re-measured."""
    from .backends import vllm_available
    from .backends.hf import HFGenerator
    from .models import resolve_model
    from .runs import write_json

    only_generate = (argv if argv is not None else sys.argv[1:]) == ["generate"]
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
    if not only_generate:
        from .bench_tune import bench_tune_load_probe, chart

        bench_tune_load_probe(results, model, steps)
        chart(results, OUT / "bench.png")
    results["ratios"] = ratios(results)
    write_json(OUT / ("bench-generate.json" if only_generate else "bench.json"), results)
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
        if isinstance(value, dict):
            report(f"{label} {key}", value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            log(f"{label} {key}", value)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None  # a baseline that produced nothing has no ratio


def ratios(r: dict) -> dict:
    best, naive = r.get("vllm", r["transformers"]), r["naive"]
    # Speed is generated tokens/s on the same model and corpus. Usable pairs per minute are reported too, but
    # the naive way got no parseable pair out of the embedded model, so that ratio is often undefined.
    out = {"generate_speedup_vs_naive": _ratio(best["tokens_per_s"], naive["tokens_per_s"]),
           "generate_transformers_speedup_vs_naive": _ratio(r["transformers"]["tokens_per_s"], naive["tokens_per_s"]),
           "generate_processed_tokens_speedup_vs_naive": _ratio(best["processed_tokens_per_s"],
                                                               naive["processed_tokens_per_s"]),
           "generate_windows_speedup_vs_naive": _ratio(best["windows_per_s"], naive["windows_per_s"]),
           "generate_pairs_per_min_ratio_vs_naive": _ratio(best["pairs_per_min"], naive["pairs_per_min"]),
           "pipeline_overhead_share": best["overhead"]}
    if "tune_selfinstruct" in r:  # not with `bench generate`
        ours, trl, fp32 = r["tune_selfinstruct"], r["tune_trl-defaults"], r["tune_selfinstruct-fp32"]
        out.update({"tune_speedup_vs_trl_defaults": _ratio(ours["tokens_per_s"], trl["tokens_per_s"]),
                    "tune_peak_rss_ratio_vs_trl_defaults": _ratio(ours["peak_rss_mb"], trl["peak_rss_mb"]),
                    "tune_peak_rss_ratio_vs_fp32": _ratio(ours["peak_rss_mb"], fp32["peak_rss_mb"]),
                    "weights_nf4_vs_fp32": _ratio(r["load_nf4"]["weights_mb"], r["load_fp32"]["weights_mb"]),
                    "weights_nf4_vs_bf16": _ratio(r["load_nf4"]["weights_mb"], r["load_bf16"]["weights_mb"])})
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


if __name__ == "__main__":
    sys.exit(main())
