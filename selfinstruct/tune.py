"""`selfinstruct tune`: QLoRA on a run's pairs with trl's SFTTrainer and peft.

The base model is frozen in 4-bit NF4 with double quantization; LoRA adapters on every linear layer train in
higher precision (NEFTune embedding noise on request). The training set mixes the QA pairs (loss on the
answer) with the corpus windows and their restatements (loss on every token). The eval loss is on held-out
phrasings of trained facts (or, by choice, on whole held-out windows). At the end the confidence gate is
calibrated (gate.py). Over 300 lines because the trainer, the data it is fed and the metrics it records are
one story; the calibration itself lives in gate.py."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import random
import resource
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from transformers import TrainerCallback
from trl import SFTTrainer

from .config import UserError
from .corpus import read_corpus
from .gate import CALIBRATION_FILE, GATE_FILE, calibrate_run, write_gate
from .prompts import LLAMA2_CHAT_TEMPLATE
from .review import reviewed_pairs
from .runs import Manifest, fingerprint, pick_run, read_json, read_jsonl, resumable_checkpoint, write_json

REQUIRED = ("question", "answer", "messages", "window", "answerable")
# Measured on the embedded model (3 windows, 18 pairs): after 9 optimizer steps the adapter ended every reply
# at once (empty answers); after 24 it answered its training questions at F1 0.44.
FEW_STEPS = 20


def split_by_window(records: list[dict], eval_share: float, seed: int) -> tuple[list[dict], list[dict]]:
    windows = sorted({r["window"] for r in records})
    if eval_share <= 0 or len(windows) < 2:
        return records, []
    random.Random(seed).shuffle(windows)
    held_out = set(windows[:min(len(windows) - 1, max(1, round(eval_share * len(windows))))])  # keep one to train
    return [r for r in records if r["window"] not in held_out], [r for r in records if r["window"] in held_out]


def fact_of(pair: dict) -> str | None:
    """What a pair asks about: its fact, or the pair itself where it has none (a refusal, a hand-made pair)."""
    return pair.get("fact_id") or pair.get("id")


def split_by_phrasing(records: list[dict], eval_share: float, seed: int) -> tuple[list[dict], list[dict]]:
    """One phrasing each of some facts asked several ways, plus a share of the refusal pairs. Closed-book,
    a held-out window's facts cannot be known, so its eval loss soon stops falling (and stops training); a
    held-out phrasing of a trained fact keeps falling as the fact is learned in a way that survives
    rephrasing."""
    rng = random.Random(seed)
    facts: dict[str, list[dict]] = {}
    for r in records:
        if r["answerable"]:
            facts.setdefault(fact_of(r), []).append(r)
    spare = [rng.choice(group) for _, group in sorted(facts.items()) if len(group) > 1]
    refusals = [r for r in records if not r["answerable"]]
    held = rng.sample(spare, min(len(spare), round(eval_share * (len(records) - len(refusals)))))
    held += rng.sample(refusals, round(eval_share * len(refusals)))
    chosen = {id(r) for r in held}
    return [r for r in records if id(r) not in chosen], held


def tokenize_pair(record: dict, tokenizer) -> dict:
    """A QA pair through the chat template, the loss on the answer only (`completion_mask`). The answer is
    tokenized on its own after the prompt, so the boundary never moves."""
    messages = record["messages"]
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    return {"input_ids": prompt_ids + answer_ids, "completion_mask": [0] * len(prompt_ids) + [1] * len(answer_ids)}


def tokenize_text(record: dict, tokenizer, tag: str, max_length: int) -> list[dict]:
    """A window or a restatement of it, after the source marker, the loss on every token; cut into pieces that
    fit `max_length`, so no part of a window is lost to truncation."""
    ids = tokenizer(f"{tag} {record['text']}", add_special_tokens=False)["input_ids"]
    size = max_length - 2
    pieces = [ids[i:i + size] for i in range(0, len(ids), size)]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return [{"input_ids": bos + piece + [tokenizer.eos_token_id],
             "completion_mask": [1] * (len(bos) + len(piece) + 1)} for piece in pieces]


def load_texts(run_dir: Path, config) -> list[dict]:
    """texts.jsonl (windows and restatements), when the text mix is on and generate wrote one."""
    path = run_dir / "texts.jsonl"
    if not config.texts or not path.is_file():
        return []
    return read_jsonl(path, strict=config.strict, required=("text", "window", "kind"))


def device_settings(on: str, batch_size: int, micro_batch_size: int | None = None) -> dict:
    """Trainer settings per device. CUDA: QLoRA's paged AdamW and gradient checkpointing (memory is what runs
    out there). CPU (measured on the embedded model, README "Performance"): no gradient checkpointing and no
    autocast (the weights are already in the compute dtype), micro-batches of 4 with gradient accumulation:
    2x trl's defaults at about their peak RSS (micro-batches of 2: 1.8x at 0.8x the RSS). Paged optimizers
    need CUDA, and bitsandbytes: plain LoRA (--quantization none) on a GPU without it gets torch's AdamW."""
    if on == "cuda":
        import torch

        from .models import compute_dtype

        micro = micro_batch_size or batch_size
        bf16 = compute_dtype("cuda") == torch.bfloat16  # fp16 on GPUs without bf16 (T4, V100)
        optim = "paged_adamw_32bit" if importlib.util.find_spec("bitsandbytes") else "adamw_torch"
        return {"optim": optim, "gradient_checkpointing": True, "bf16": bf16, "fp16": not bf16,
                "per_device_train_batch_size": micro, "gradient_accumulation_steps": batch_size // micro}
    micro = micro_batch_size or max(d for d in range(1, min(batch_size, 4) + 1) if batch_size % d == 0)
    return {"optim": "adamw_torch", "gradient_checkpointing": False, "bf16": False, "use_cpu": True,
            "dataloader_pin_memory": False, "per_device_train_batch_size": micro,
            "gradient_accumulation_steps": batch_size // micro}


def process_batch(config, processes: int) -> int:
    """Each process's share of --batch-size, so an optimizer step sees the same number of sequences however
    many processes `accelerate launch` starts."""
    share, rest = divmod(config.batch_size, processes)
    if rest or (config.micro_batch_size and share % config.micro_batch_size):
        raise UserError(f"--batch-size {config.batch_size} must split evenly over {processes} processes "
                        "(and each share over --micro-batch-size)")
    return share


def default_learning_rate(model_config) -> float:
    """Rough parameter count from the shape: small models want a larger LoRA step than QLoRA's 7B+ setting."""
    c = model_config
    params = 12 * c.num_hidden_layers * c.hidden_size ** 2 + c.vocab_size * c.hidden_size
    return 2e-3 if params < 1e9 else 2e-4


def load_pairs(run_dir: Path, strict: bool) -> list[dict]:
    records = read_jsonl(run_dir / "qa.jsonl", strict=strict, required=REQUIRED)
    bad = [r for r in records if not (isinstance(r["messages"], list) and len(r["messages"]) == 3)]
    if bad and strict:
        raise UserError(f"{run_dir / 'qa.jsonl'}: record {bad[0].get('id')} has no system/user/assistant messages")
    if bad:
        print(f"selfinstruct: warning: {run_dir / 'qa.jsonl'}: skipped {len(bad)} record(s) without system/user/"
              f"assistant messages (first: {bad[0].get('id')}); --strict refuses them", file=sys.stderr)
    records = [r for r in records if r not in bad]
    if not records:
        raise UserError(f"{run_dir / 'qa.jsonl'} has no usable pairs: run generate (or check its rejects.jsonl)")
    return records


def run(config) -> int:
    """One process, or each of `accelerate launch --num_processes N` (DDP): every process trains, the main one
    alone talks, writes the adapter and metrics and calibrates the gate (the others' messages are dropped;
    an error still shows, since it leaves the block)."""
    from accelerate import PartialState

    from .models import device

    state = PartialState(cpu=device() == "cpu")  # as the Trainer will make it: on a CPU, gloo across processes
    with contextlib.nullcontext() if state.is_main_process else contextlib.redirect_stderr(io.StringIO()):
        return train_run(config, state)


def train_run(config, state) -> int:
    from .models import device, load_model, load_tokenizer, resolve_model

    run_dir = pick_run(config.run)
    manifest = Manifest.read(run_dir)
    records, review = reviewed_pairs(run_dir, manifest, load_pairs(run_dir, config.strict))
    if review["reviewed"]:
        print(f"tune: review.jsonl: {review['rejected']} rejected pairs dropped, {review['edited']} edited ones "
              f"replaced, {review['accepted']} accepted, {review['unreviewed']} not reviewed", file=sys.stderr)
    if not records:
        raise UserError(f"every pair in {run_dir / 'qa.jsonl'} was rejected in review: nothing to train on")
    model_ref = resolve_model(config.model or manifest.model_spec)
    split = split_by_window if config.hold_out == "window" else split_by_phrasing
    train, held_out = split(records, config.eval_share, config.seed)
    print(f"tune: {len(train)} training pairs, {len(held_out)} held out (by {config.hold_out}) from {run_dir}",
          file=sys.stderr)

    texts = load_texts(run_dir, config)
    tokenizer = load_tokenizer(model_ref.path)
    model, quant = load_model(model_ref.path, config.quantization, for_training=True)
    if 0 < config.select < len(train):
        train = (select_diverse(model, tokenizer, train, config.select, config.seed) if config.select_by == "k-center"
                 else select_random(train, config.select, config.seed))
    tokenizer.chat_template = LLAMA2_CHAT_TEMPLATE  # the format the pairs were written in, kept with the adapter
    train_rows = [tokenize_pair(r, tokenizer) for r in train]
    text_rows = [row for t in texts for row in tokenize_text(t, tokenizer, manifest.tag, config.max_length)]
    print(f"tune: text mix: {len(texts)} texts ({sum(t['kind'] == 'rewrite' for t in texts)} restatements) in "
          f"{len(text_rows)} pieces beside {len(train_rows)} QA pairs", file=sys.stderr) if texts else None
    if config.learning_rate is None:
        config = replace(config, learning_rate=default_learning_rate(model.config))
    settings = device_settings(device(), process_batch(config, state.num_processes), config.micro_batch_size)
    warn_if_few_steps(len(train_rows) + len(text_rows), config)
    adapter_dir = run_dir / "adapter"
    started = time.time()
    eval_rows = [tokenize_pair(r, tokenizer) for r in held_out]
    checkpoints = adapter_dir / ".checkpoints"
    with state.main_process_first():  # the main process clears stale checkpoints before the others look
        resume = resumable_checkpoint(checkpoints, fingerprint(config, run_dir, model_ref.path),
                                      clear=state.is_main_process)
    qa_first = config.order == "qa-first" and bool(text_rows)
    planned = qa_first or config.vary_questions > 0
    whole, qa_only = planned_epochs(config.epochs) if qa_first else (max(1, round(config.epochs)), 0)
    qa_epochs = (varied_epochs(train, tokenizer, whole, config.vary_questions, config.seed)
                 if config.vary_questions > 0 else [train_rows] * whole)
    rows = planned_order(qa_epochs, text_rows, qa_only, config.batch_size, config.seed) if planned \
        else train_rows + text_rows
    epoch_rows = len(train_rows) + (0 if qa_first else len(text_rows))  # an eval and a checkpoint each
    trainer = make_trainer(config, model, tokenizer, rows, eval_rows, checkpoints, settings,
                           save_every=math.ceil(epoch_rows / config.batch_size) if planned else None)
    baseline = trainer.evaluate() if held_out else {}  # the fresh adapter is the base model, resumed or not
    if resume:
        print(f"tune: resuming from {resume} (an interrupted tune of the same pairs and options)", file=sys.stderr)
    resumed_epoch = checkpoint_epoch(resume)  # read now: training rotates that checkpoint away
    result = trainer.train(resume_from_checkpoint=resume)
    final_eval = trainer.evaluate() if held_out else {}
    if not state.is_main_process:
        return 0
    trainer.model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    metrics = train_metrics(config, trainer, result, baseline, final_eval, quant, settings, model_ref, train,
                            held_out, time.time() - started, resumed_epoch)
    metrics["text_mix"] = {"texts": len(texts), "windows": sum(t["kind"] == "window" for t in texts),
                           "rewrites": sum(t["kind"] == "rewrite" for t in texts), "text_pieces": len(text_rows),
                           "qa_pairs": len(train_rows), "loss": "all tokens of texts, answer tokens of QA pairs",
                           "order": "qa-first" if qa_first else "mixed", "qa_only_epochs": qa_only,
                           "varied_questions": config.vary_questions}
    if planned:  # the Trainer saw one pass over the planned order: its epoch is a share of all of them
        metrics["epochs"] = round(metrics["epochs"] * whole, 2)
    metrics["review"] = review
    metrics["processes"] = state.num_processes
    for name in (GATE_FILE, CALIBRATION_FILE):  # a gate calibrated for an older adapter is wrong for this one
        (adapter_dir / name).unlink(missing_ok=True)
    if config.gate:
        corpus = read_corpus(manifest.corpus_path, manifest.language)
        gate, calibration = calibrate_run(trainer.model, tokenizer, manifest, records, held_out, corpus.text,
                                          config.gate_target, config.seed, config.gate_names)
        write_gate(adapter_dir, gate, calibration)
        metrics["gate"] = gate and {k: v for k, v in gate.items() if k != "names"}  # gate.json has them
    write_json(adapter_dir / "train_metrics.json", metrics)
    if config.merge:
        merge(model_ref.path, adapter_dir, run_dir / "merged", tokenizer, config.quantization)
    shutil.rmtree(checkpoints, ignore_errors=True)  # only now: a tune killed before this point resumes from them
    print(format_metrics(metrics, adapter_dir), file=sys.stderr)
    if metrics.get("gate"):
        g = metrics["gate"]
        print(f"tune: gate {g['signal']} < {g['threshold']} refuses (calibration AUROC {g['calibration_auroc']}, "
              f"base-model control {g['base_control_auroc']}; {g['counts']['known']} known, "
              f"{g['counts']['negatives']} hard negatives, {g['counts']['negatives_refused_by_gate']} refused, "
              f"{g['counts']['negatives_refused_by_names']} of them for a name the corpus never mentions) "
              f"-> {adapter_dir / GATE_FILE}", file=sys.stderr)
    return 0


def select_diverse(model, tokenizer, train: list[dict], n: int, seed: int) -> list[dict]:
    """`--select N`: N training pairs by k-center greedy on their questions, every fact before a repeat."""
    from .diversity import k_center, question_embeddings

    chosen = k_center(question_embeddings(model, tokenizer, [r["question"] for r in train]),
                      [fact_of(r) for r in train], n, seed)
    print(f"tune: --select {n}: {len(chosen)} of {len(train)} training pairs by k-center on question embeddings "
          f"({facts_covered(train, chosen)}; every one kept before any repeat)", file=sys.stderr)
    return [train[i] for i in sorted(chosen)]


def select_random(train: list[dict], n: int, seed: int) -> list[dict]:
    """`--select N --select-by random`: N training pairs drawn uniformly, the baseline k-center is measured against."""
    chosen = sorted(random.Random(seed).sample(range(len(train)), n))
    print(f"tune: --select {n}: {n} of {len(train)} training pairs at random ({facts_covered(train, chosen)})",
          file=sys.stderr)
    return [train[i] for i in chosen]


def facts_covered(train: list[dict], chosen: list[int]) -> str:
    return f"{len({fact_of(train[i]) for i in chosen})} of {len({fact_of(r) for r in train})} facts and refusals"


def warn_if_few_steps(n_train: int, config) -> None:
    steps = math.ceil(n_train / config.batch_size) * config.epochs
    if steps < FEW_STEPS:
        print(f"tune: only {steps:.0f} optimizer steps ({n_train} pairs, {config.epochs:g} epochs, batch "
              f"{config.batch_size}); under {FEW_STEPS} an adapter may not learn the answer format: raise --epochs "
              "or lower --batch-size", file=sys.stderr)


def lora_config(config):
    """LoRA on every linear layer (q, k, v, o, gate, up, down), as QLoRA trains it."""
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def planned_epochs(epochs: float) -> tuple[int, int]:
    """`--order qa-first`: (whole epochs in all, epochs of QA pairs alone among them)."""
    whole = max(2, round(epochs))
    return whole, whole // 2


def qa_first_order(qa_rows: list[dict], text_rows: list[dict], epochs: float, batch_size: int,
                   seed: int) -> list[dict]:
    """`--order qa-first` (PIT, Jiang et al. 2024): the QA pairs alone for the first half of the epochs, so the
    model learns how a fact is asked for before it reads the texts, then QA pairs and texts together."""
    whole, qa_only = planned_epochs(epochs)
    return planned_order([qa_rows] * whole, text_rows, qa_only, batch_size, seed)


def planned_order(qa_epochs: list[list[dict]], text_rows: list[dict], qa_only: int, batch_size: int,
                  seed: int) -> list[dict]:
    """The whole run as one list, trained in this order: epoch after epoch, that epoch's QA rows (the texts
    too, after the first `qa_only` epochs). Within an epoch, rows are shuffled and then sorted by length in
    chunks of 8 batches, as group_by_length does, so a batch is not padded to the longest text."""
    rng = random.Random(seed)
    order = []
    for epoch, qa_rows in enumerate(qa_epochs):
        rows = list(qa_rows) if epoch < qa_only else qa_rows + text_rows
        rng.shuffle(rows)
        chunk = 8 * batch_size
        for start in range(0, len(rows), chunk):
            order += sorted(rows[start:start + chunk], key=lambda row: len(row["input_ids"]), reverse=True)
    return order


def varied_epochs(train: list[dict], tokenizer, epochs: int, share: float, seed: int) -> list[list[dict]]:
    """`--vary-questions SHARE`: each epoch's QA rows, with that share of the questions worded anew
    (questions.varied_question) and the rest as written, so no fact is learned in one wording only."""
    from .questions import varied_question

    rng = random.Random(seed)

    def asked(record: dict) -> dict:
        if rng.random() >= share:
            return record
        system, user, answer = record["messages"]
        user = {**user, "content": user["content"].replace(record["question"],
                                                           varied_question(record["question"], rng))}
        return {**record, "messages": [system, user, answer]}

    return [[tokenize_pair(asked(r), tokenizer) for r in train] for _ in range(epochs)]


def make_trainer(config, model, tokenizer, train, held_out, checkpoints: Path, settings: dict,
                 save_every: int | None = None):
    """`save_every`: `train` is a planned order over every epoch (qa_first_order), trained once in sequence,
    with an eval and a checkpoint every that many steps; otherwise the Trainer shuffles `train` each epoch."""
    from datasets import Dataset, disable_progress_bars
    from transformers import EarlyStoppingCallback, PrinterCallback
    from trl import SFTConfig

    disable_progress_bars()  # trl's five dataset-preparation bars per split bury our own
    evaluating = bool(held_out)
    args = SFTConfig(
        output_dir=str(checkpoints), num_train_epochs=1 if save_every else config.epochs,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine", warmup_steps=0.03, weight_decay=0.0, max_grad_norm=1.0, seed=config.seed,
        max_length=config.max_length, packing=False, completion_only_loss=True,
        neftune_noise_alpha=config.neftune_alpha or None, logging_steps=1, report_to="none", disable_tqdm=True,
        # A checkpoint an epoch, with optimizer and RNG state, so a killed tune resumes where it stopped.
        eval_strategy=("steps" if save_every else "epoch") if evaluating else "no",
        save_strategy="steps" if save_every else "epoch", eval_steps=save_every, save_steps=save_every or 500,
        save_total_limit=1, load_best_model_at_end=evaluating, metric_for_best_model="eval_loss" if evaluating
        else None, greater_is_better=False, save_only_model=False, dataloader_num_workers=0, prediction_loss_only=True,
        train_sampling_strategy="sequential" if save_every else "group_by_length",
        ddp_find_unused_parameters=False,  # LoRA uses every adapter
        **settings)
    callbacks = [ProgressBar()]
    if evaluating:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stop_patience))
    trainer = AnswerLossTrainer(
        model=model, args=args, processing_class=tokenizer, peft_config=lora_config(config), callbacks=callbacks,
        train_dataset=Dataset.from_list(train), eval_dataset=Dataset.from_list(held_out) if evaluating else None)
    trainer.remove_callback(PrinterCallback)  # our bar shows the loss; the log dicts would bury it
    adapter_in_compute_dtype(trainer.model)
    return trainer


def adapter_in_compute_dtype(model) -> None:
    """trl casts a quantized model's adapter to bf16, QLoRA's recipe where the base computes in bf16. Where it computes
    in fp32 (a CPU without AVX-512 bf16: most laptops), every LoRA matmul then runs in emulated bf16 and each update
    is rounded into bf16 weights: on the 2-core AVX2 EPYC a micro-batch took 3.3-3.9x as long as with the adapter in
    fp32 (measured, README "Performance"). There the adapter follows the base's compute dtype, as the embeddings do;
    elsewhere trl's bf16 stands."""
    import torch

    if model.get_input_embeddings().weight.dtype != torch.float32:
        return
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


class AnswerLossTrainer(SFTTrainer):
    """Cross-entropy on the answer tokens only, sending only those positions through the LM head. trl's fused
    head computes log-probs, entropy and top-1 accuracy at every position: measured, 57% of a CPU training step
    on the embedded model, for a loss that needs a third of the positions."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch
        import torch.nn.functional as F

        labels = inputs["labels"][:, 1:]
        answer = labels != -100
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            # DDP averages gradients only through its own forward: the whole model, the head at every position.
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                           use_cache=False).logits[:, :-1][answer].float()
        else:
            causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
            body = getattr(causal_lm, causal_lm.base_model_prefix)
            hidden = body(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                          use_cache=False).last_hidden_state[:, :-1]
            logits = causal_lm.get_output_embeddings()(hidden[answer]).float()
        count = num_items_in_batch if num_items_in_batch is not None else answer.sum()
        loss = F.cross_entropy(logits, labels[answer], reduction="sum") / max(int(count), 1)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes  # the count spans all processes and DDP averages: undo
        return (loss, None) if return_outputs else loss


class ProgressBar(TrainerCallback):
    """One bar over optimizer steps with the running loss and an ETA, instead of the Trainer's log dicts."""

    bar = None
    trained = False

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm import tqdm

        if not state.is_world_process_zero:  # one bar, however many processes train
            return
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step", desc="tune",
                        dynamic_ncols=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if self.bar is not None and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)
        if "eval_loss" in logs:
            when = "kept checkpoint" if self.trained else f"step {state.global_step}"
            line = f"tune: {when} eval loss {logs['eval_loss']:.3f}"
            self.bar.write(line, file=sys.stderr) if self.bar is not None else print(line, file=sys.stderr)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(1)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
        self.bar, self.trained = None, True


def checkpoint_epoch(checkpoint: str | None) -> float:
    """How far the checkpoint a tune resumes from had trained (0 for a fresh tune)."""
    return read_json(Path(checkpoint) / "trainer_state.json")["epoch"] if checkpoint else 0.0


def train_metrics(config, trainer, result, baseline, final_eval, quant, settings, model_ref, train, held_out,
                  wall: float, resumed_epoch: float = 0.0) -> dict:
    """What tune did. tokens_per_second counts only the tokens this process trained: a tune resumed from its
    last checkpoint trains none (None, not all epochs' tokens over a second)."""
    import torch

    history = trainer.state.log_history
    steps = [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h]
    evals = [{"step": h["step"], "eval_loss": h["eval_loss"]} for h in history if "eval_loss" in h]
    tokens_per_epoch = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    trained_tokens = tokens_per_epoch * trainer.state.epoch
    trained_here = tokens_per_epoch * (trainer.state.epoch - resumed_epoch)
    return {
        "config": asdict(config), "base_model": {"spec": model_ref.spec, "path": str(model_ref.path)},
        "quantization": quant, "device_settings": settings, "lora_targets": "all-linear",
        "train_pairs": len(train), "eval_pairs": len(held_out),
        "eval_windows": sorted({r["window"] for r in held_out}) if config.hold_out == "window" else [],
        "eval_ids": [r.get("id") for r in held_out],
        "steps": trainer.state.global_step, "epochs": trainer.state.epoch, "train_loss": steps, "eval_loss": evals,
        "first_train_loss": steps[0]["loss"] if steps else None,
        "last_train_loss": steps[-1]["loss"] if steps else None,
        "eval_loss_before": baseline.get("eval_loss"), "eval_loss_after": final_eval.get("eval_loss"),
        "best_eval_loss": trainer.state.best_metric, "best_checkpoint_step": _best_step(trainer),
        "trained_tokens": int(trained_tokens),
        "tokens_per_second": trained_here / result.metrics["train_runtime"] if trained_here > 0 else None,
        "train_seconds": result.metrics["train_runtime"], "wall_seconds": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
    }


def _best_step(trainer) -> int | None:
    best = trainer.state.best_model_checkpoint
    return int(best.rsplit("-", 1)[-1]) if best else None


def merge(base_path: Path, adapter_dir: Path, out: Path, tokenizer, quantization: str) -> None:
    """The adapter folded into the base it was trained against, servable by vLLM or transformers without peft.
    With NF4 that base is the de-quantized NF4 weights, not the original ones: the adapter learned to correct
    the quantized layers, and on the originals its answers drift from what `ask` and `serve` give. The sum is
    taken in fp32 and rounded once to the compute dtype it is saved in: summed in bf16, B @ A and W + B @ A
    were each rounded, and a short rank-64 run's folded answers parted from the served ones after near ties
    that the fp32 fold kept (measured, README)."""
    import torch
    from peft import PeftModel

    from .models import compute_dtype, load_model

    base, _ = load_model(base_path, quantization, dtype=torch.float32)
    if quantization == "nf4":
        base = base.dequantize()
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.to(compute_dtype()).save_pretrained(out)
    tokenizer.save_pretrained(out)


def format_metrics(m: dict, adapter_dir: Path) -> str:
    def loss(x):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

    rate = "n/a" if m["tokens_per_second"] is None else f"{m['tokens_per_second']:.0f}"
    return (f"tune: {m['steps']} steps ({m['epochs']:.1f} epochs), train loss {loss(m['first_train_loss'])} -> "
            f"{loss(m['last_train_loss'])}, eval loss {loss(m['eval_loss_before'])} -> {loss(m['eval_loss_after'])}"
            f" (best {loss(m['best_eval_loss'])}), {rate} tokens/s, peak RSS "
            f"{m['peak_rss_mb']:.0f} MB, base {m['quantization']['quantization']} -> {adapter_dir}")
