"""`make bench`: speed and memory of generate, tune and probe, as ratios against naive baselines measured in
the same script on the same machine, model and corpus. BENCH_QUICK=1 for a short pass (fewer windows and
steps, no vLLM start-up and no scale test).

Training runs and model loads each go in a fresh process, so every peak RSS is that configuration's own."""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import re
import resource
import sys
import time
import traceback
from pathlib import Path

QUICK = os.environ.get("BENCH_QUICK") == "1"
OUT = Path("outputs/bench")
SAMPLE = Path("corpora/harbour_of_velmoor.txt")
LARGE = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "manual_of_surgery_vol1.txt"
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

    recorder = Recorder(engine)
    config = GenerateConfig(corpus=str(corpus), out=str(out), max_windows=windows, overwrite=True)
    tokens, start = engine.generated_tokens, time.perf_counter()
    try:
        generate.run(config, generator=recorder)
    except UserError:
        pass  # windows that yield no pair are still a measurement of cost
    seconds = time.perf_counter() - start
    generated = engine.generated_tokens - tokens
    summary = json.loads((out / "manifest.json").read_text())["summary"]
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


def train_in_child(kind: str, model_path: str, run_dir: str, steps: int, adapter_out: str | None) -> dict:
    """One training configuration, alone in this process: selfinstruct's trainer, or trl's SFTTrainer with
    its defaults (only use_cpu added, which trl needs to start on a CPU); same model loader, LoRA and data."""
    import torch
    from peft import LoraConfig
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from .config import TuneConfig
    from .models import device, load_model, load_tokenizer
    from .prompts import LLAMA2_CHAT_TEMPLATE
    from .tune import device_settings, load_pairs, make_trainer, tokenize_pair

    torch.manual_seed(0)
    pairs = load_pairs(Path(run_dir), strict=False)
    tokenizer = load_tokenizer(Path(model_path))
    tokenizer.chat_template = LLAMA2_CHAT_TEMPLATE
    quantization = "none" if kind == "selfinstruct-fp32" else "nf4"
    if kind == "selfinstruct-fp32":
        import selfinstruct.models as models

        models.compute_dtype = lambda on=None: torch.float32  # the unquantized fp32 reference
    model, record = load_model(Path(model_path), quantization, for_training=True)
    config = TuneConfig(epochs=1000, batch_size=8, learning_rate=5e-4, eval_share=0)
    checkpoints = Path(run_dir) / f".bench-{kind}"
    if kind == "trl-defaults":
        from datasets import Dataset

        args = SFTConfig(output_dir=str(checkpoints), max_steps=steps, report_to="none", save_strategy="no",
                         disable_tqdm=True, use_cpu=device() == "cpu")
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules="all-linear", task_type="CAUSAL_LM")
        conversations = [{"prompt": p["messages"][:2], "completion": p["messages"][2:3]} for p in pairs]
        trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, peft_config=lora,
                             train_dataset=Dataset.from_list(conversations))
        trainer.remove_callback(PrinterCallback)  # its log lines only; costs nothing measurable
    else:
        rows = [tokenize_pair(p, tokenizer) for p in pairs]
        trainer = make_trainer(config, model, tokenizer, rows, [], checkpoints, device_settings(device(), 8))
        trainer.args.max_steps = steps
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    sequences = steps * trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
    if adapter_out:
        trainer.model.save_pretrained(adapter_out)
        tokenizer.save_pretrained(adapter_out)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"kind": kind, "steps": steps, "seconds": seconds,
            "tokens_per_s": sequences * tokens / len(trainer.train_dataset) / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "weights_mb": record["weights_bytes"] / 2**20, "final_loss": losses[-1] if losses else None}


def load_in_child(model_path: str, how: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from .models import nf4_config

    kwargs = {"nf4": {"quantization_config": nf4_config(torch.bfloat16), "dtype": torch.bfloat16},
              "bf16": {"dtype": torch.bfloat16}, "fp32": {"dtype": torch.float32}}[how]
    model = AutoModelForCausalLM.from_pretrained(model_path, device_map="cpu", **kwargs)
    # Weights only: process RSS after a load is no measure here, safetensors maps unconverted weights lazily.
    return {"how": how, "weights_mb": model.get_memory_footprint() / 2**20}


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


def bench_probe(model_path: Path, adapter: Path, run_dir: Path, n: int) -> dict:
    from .backends.hf import HFGenerator
    from .config import ProbeConfig
    from .probe import Probe, ask, judge
    from .prompts import system_prompt
    from .runs import read_json, read_jsonl

    tag = read_json(run_dir / "manifest.json")["source_tag"]
    pairs = [p for p in read_jsonl(run_dir / "qa.jsonl") if p["answerable"]][:n]
    probes = [Probe(p["id"], "answerable", "verbatim", p["question"], p["answer"], p.get("key")) for p in pairs]
    generator = HFGenerator(model_path, adapter=adapter)
    start = time.perf_counter()
    answers = ask(generator, probes, system_prompt(tag, "en"), tag, ProbeConfig(), "tuned")
    seconds = time.perf_counter() - start
    [judge(p, a) for p, a in zip(probes, answers, strict=True)]
    return {"probes": len(probes), "seconds": seconds, "probes_per_s": len(probes) / seconds}


def main() -> int:
    from .backends import vllm_available
    from .backends.hf import HFGenerator
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
