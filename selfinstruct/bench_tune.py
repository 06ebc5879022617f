"""`make bench`, the tune and probe half: training speed and memory of selfinstruct's trainer against trl's
defaults and an unquantized fp32 reference, model load footprints, probe throughput, and the chart of both
halves (bench.png). Each training run and load goes in a fresh process (bench.in_child), so every peak RSS is
that configuration's own."""

from __future__ import annotations

import resource
import time
from pathlib import Path


def train_in_child(kind: str, model_path: str, run_dir: str, steps: int, adapter_out: str | None) -> dict:
    """One training configuration, alone in this process: selfinstruct's trainer, or trl's SFTTrainer with
    its defaults (only use_cpu added, which trl needs to start on a CPU); same model loader, LoRA and data."""
    import torch
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from .config import TuneConfig
    from .models import device, load_model, load_tokenizer
    from .prompts import LLAMA2_CHAT_TEMPLATE
    from .tune import device_settings, load_pairs, lora_config, make_trainer, tokenize_pair

    torch.manual_seed(0)
    pairs = load_pairs(Path(run_dir), strict=False)
    tokenizer = load_tokenizer(Path(model_path))
    tokenizer.chat_template = LLAMA2_CHAT_TEMPLATE
    fp32 = kind == "selfinstruct-fp32"  # the unquantized fp32 reference
    model, record = load_model(Path(model_path), "none" if fp32 else "nf4", for_training=True,
                               dtype=torch.float32 if fp32 else None)
    config = TuneConfig(epochs=1000, batch_size=8, learning_rate=5e-4, eval_share=0)
    checkpoints = Path(run_dir) / f".bench-{kind}"
    if kind == "trl-defaults":
        from datasets import Dataset

        args = SFTConfig(output_dir=str(checkpoints), max_steps=steps, report_to="none", save_strategy="no",
                         disable_tqdm=True, use_cpu=device() == "cpu")
        conversations = [{"prompt": p["messages"][:2], "completion": p["messages"][2:3]} for p in pairs]
        trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, peft_config=lora_config(config),
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


def bench_probe(model_path: Path, adapter: Path, run_dir: Path, n: int) -> dict:
    from .backends.hf import HFGenerator
    from .probe import Probe, ask, judge, render_questions
    from .runs import Manifest, read_jsonl

    manifest = Manifest.read(run_dir)
    pairs = [p for p in read_jsonl(run_dir / "qa.jsonl") if p["answerable"]][:n]
    probes = [Probe(p["id"], "answerable", "verbatim", p["question"], p["answer"], p.get("key")) for p in pairs]
    generator = HFGenerator(model_path, adapter=adapter)
    start = time.perf_counter()
    texts = render_questions(generator.tokenizer, [p.question for p in probes], manifest.system_prompt, manifest.tag,
                             "tuned")
    answers = ask(generator, texts, manifest.tag, "tuned", progress=False)
    seconds = time.perf_counter() - start
    [judge(p, a) for p, a in zip(probes, answers, strict=True)]
    return {"probes": len(probes), "seconds": seconds, "probes_per_s": len(probes) / seconds}


def bench_tune_load_probe(results: dict, model: Path, steps: int) -> None:
    from .bench import OUT, QUICK, in_child, report

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
