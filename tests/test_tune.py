import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from selfinstruct.cli import main
from selfinstruct.config import TuneConfig
from selfinstruct.models import cpu_has_bf16, linear4bit_layers, load_model, load_tokenizer
from selfinstruct.prompts import LLAMA2_CHAT_TEMPLATE, chat_messages, render_llama2, system_prompt
from selfinstruct.tune import (
    device_settings,
    make_trainer,
    qa_first_order,
    split_by_phrasing,
    split_by_window,
    tokenize_pair,
    tokenize_text,
    varied_epochs,
    warn_if_few_steps,
)

from .conftest import REPO, SAMPLE_EN

TAG = "Source:4242REF"
FACTS = [("Who built the Brinewheel?", "Saro Keldane built the Brinewheel in 1372."),
         ("What does the Tamsell Lamp burn?", "The Tamsell Lamp burns dunberry oil."),
         ("Where is Corrow Skerry?", "Corrow Skerry lies in the bay outside the Long Arm."),
         ("When was the Long Arm finished?", "The Long Arm was finished in the year 1206.")]


def records(n: int = 16) -> list[dict]:
    out = []
    for i in range(n):
        question, answer = FACTS[i % len(FACTS)]
        out.append({"id": f"r{i}", "window": i, "question": question, "answer": answer, "answerable": True,
                    "messages": chat_messages(system_prompt(TAG, "en"), TAG, question, answer)})
    return out


def tokenizer_for(path):
    tokenizer = load_tokenizer(path)
    tokenizer.chat_template = LLAMA2_CHAT_TEMPLATE
    return tokenizer


def trainer_for(path, recs, held_out=(), epochs=1.0, lr=2e-4, out=None, on="cpu", neftune_alpha=None):
    model, _ = load_model(path, "nf4", for_training=True)
    config = TuneConfig(epochs=epochs, batch_size=8, learning_rate=lr, eval_share=0.0, neftune_alpha=neftune_alpha)
    tokenizer = tokenizer_for(path)
    return make_trainer(config, model, tokenizer, [tokenize_pair(r, tokenizer) for r in recs],
                        [tokenize_pair(r, tokenizer) for r in held_out], Path(out or "/tmp/unused"),
                        device_settings(on, 8))


def test_cuda_settings_page_the_optimizer_only_where_bitsandbytes_is(monkeypatch):
    import importlib.util

    import selfinstruct.models

    monkeypatch.setattr(selfinstruct.models, "compute_dtype", lambda on=None: torch.bfloat16)
    assert device_settings("cuda", 8)["optim"] == "paged_adamw_32bit"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    settings = device_settings("cuda", 8)
    assert settings["optim"] == "adamw_torch" and settings["bf16"] and settings["gradient_checkpointing"]


def test_split_keeps_whole_windows_apart():
    recs = [{"window": w, "id": f"{w}-{k}"} for w in range(20) for k in range(3)]
    train, held = split_by_window(recs, 0.2, seed=1)
    assert {r["window"] for r in train}.isdisjoint({r["window"] for r in held})
    assert len({r["window"] for r in held}) == 4 and len(train) + len(held) == len(recs)
    train, held = split_by_window(recs[:6], 0.9, seed=1)  # two windows: one must stay to train on
    assert len({r["window"] for r in train}) == 1 and len({r["window"] for r in held}) == 1


def test_phrasing_split_trains_every_fact_and_holds_out_only_spare_phrasings():
    recs = [{"window": f, "id": f"f{f}-q{k}", "fact_id": f"f{f}", "answerable": True}
            for f in range(20) for k in range(1 + f % 3)]  # facts asked once, twice and three times
    recs += [{"window": i, "id": f"r{i}", "fact_id": f"r{i}", "answerable": False} for i in range(10)]
    train, held = split_by_phrasing(recs, 0.2, seed=1)
    assert len(train) + len(held) == len(recs)
    assert {r["fact_id"] for r in train if r["answerable"]} == {f"f{f}" for f in range(20)}
    assert sum(not r["answerable"] for r in held) == 2 and sum(r["answerable"] for r in held) == 8
    assert len({r["fact_id"] for r in held}) == len(held)  # at most one phrasing of a fact


def test_template_gives_the_same_ids_as_the_llama2_text_with_one_bos_and_one_eos(tiny_model):
    tokenizer = tokenizer_for(tiny_model)
    record = records(1)[0]
    via_template = tokenizer.apply_chat_template(record["messages"], tokenize=True, return_dict=True)["input_ids"]
    text = render_llama2(record["messages"], tokenizer.bos_token, tokenizer.eos_token)
    via_text = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert via_template == via_text
    assert via_template.count(tokenizer.bos_token_id) == 1 and via_template[0] == tokenizer.bos_token_id
    assert via_template.count(tokenizer.eos_token_id) == 1 and via_template[-1] == tokenizer.eos_token_id


def test_completion_only_masking_masks_the_prompt(tiny_model):
    trainer = trainer_for(tiny_model, records(4))
    tokenizer = trainer.processing_class
    example = trainer.train_dataset[0]
    batch = trainer.data_collator([example])
    labels, ids = batch["labels"][0].tolist(), batch["input_ids"][0].tolist()
    first = next(i for i, label in enumerate(labels) if label != -100)
    assert tokenizer.decode(ids[:first]).rstrip().endswith("[/INST]")
    assert tokenizer.decode([t for t in labels if t != -100]).strip() == \
        f"{TAG} {FACTS[0][1]} {tokenizer.eos_token}".strip()


def test_text_rows_train_every_token_and_qa_rows_only_the_answer(tiny_model):
    tokenizer = tokenizer_for(tiny_model)
    window = {"text": "Saro Keldane built the Brinewheel in 1372. " * 40, "window": 0, "kind": "window"}
    pieces = tokenize_text(window, tokenizer, TAG, max_length=64)
    assert len(pieces) > 1 and all(len(p["input_ids"]) <= 64 and all(p["completion_mask"]) for p in pieces)
    assert tokenizer.decode(pieces[0]["input_ids"][1:]).startswith(f"{TAG} Saro Keldane")
    assert sum(len(p["input_ids"]) - 2 for p in pieces) == len(tokenizer(f"{TAG} {window['text']}")["input_ids"])
    pair = tokenize_pair(records(1)[0], tokenizer)
    model, _ = load_model(tiny_model, "nf4", for_training=True)
    trainer = make_trainer(TuneConfig(eval_share=0.0), model, tokenizer, [pieces[0], pair], [], Path("/tmp/unused"),
                           device_settings("cpu", 8))
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    assert (batch["labels"][0][:len(pieces[0]["input_ids"])] != -100).all()  # the text: every token
    assert (batch["labels"][1] != -100).sum() == sum(pair["completion_mask"])  # the pair: the answer only
    answer = [t for t in batch["labels"][1].tolist() if t != -100]
    assert tokenizer.decode(answer).strip() == f"{TAG} {FACTS[0][1]} {tokenizer.eos_token}".strip()


def test_qa_first_order_trains_the_pairs_alone_for_half_the_epochs_then_the_mix():
    qa = [{"input_ids": [1] * (3 + i % 5), "name": f"qa{i}"} for i in range(20)]
    texts = [{"input_ids": [1] * 60, "name": f"text{i}"} for i in range(6)]
    order = qa_first_order(qa, texts, epochs=5, batch_size=4, seed=0)
    names = [row["name"] for row in order]
    assert len(order) == 2 * 20 + 3 * 26  # 5 epochs: 2 of pairs alone, 3 of pairs and texts
    assert all(n.startswith("qa") for n in names[:40]) and sorted(names[:20]) == sorted(names[20:40])
    assert all(sorted(names[40 + 26 * e:40 + 26 * (e + 1)]) == sorted(r["name"] for r in qa + texts)
               for e in range(3))
    chunk = order[40:66]  # one chunk of 8 batches (here the whole epoch), longest first
    assert [len(r["input_ids"]) for r in chunk] == sorted((len(r["input_ids"]) for r in chunk), reverse=True)
    assert names == [row["name"] for row in qa_first_order(qa, texts, epochs=5, batch_size=4, seed=0)]
    assert names != [row["name"] for row in qa_first_order(qa, texts, epochs=5, batch_size=4, seed=1)]


def test_varied_epochs_word_a_share_of_the_questions_anew_each_epoch_and_keep_the_answers(tiny_model):
    tokenizer = tokenizer_for(tiny_model)
    recs = records(40)
    written = [tokenize_pair(r, tokenizer) for r in recs]
    assert varied_epochs(recs, tokenizer, 3, 0.0, seed=0) == [written] * 3

    def changed(epochs):
        return sum(row != w for epoch in epochs for row, w in zip(epoch, written, strict=True))

    epochs = varied_epochs(recs, tokenizer, 3, 0.5, seed=0)
    assert 0 < changed(epochs) < changed(varied_epochs(recs, tokenizer, 3, 1.0, seed=0))
    assert epochs[0] != epochs[1] != epochs[2]  # drawn anew each epoch
    for epoch in epochs:
        for row, w in zip(epoch, written, strict=True):  # the answer and its loss mask are the written ones
            n = sum(w["completion_mask"])
            assert row["input_ids"][-n:] == w["input_ids"][-n:] and sum(row["completion_mask"]) == n
    assert varied_epochs(recs, tokenizer, 3, 0.5, seed=0) == epochs


def test_planned_order_is_trained_in_sequence_once(tiny_model):
    tokenizer = tokenizer_for(tiny_model)
    rows = [tokenize_pair(r, tokenizer) for r in records(8)]
    model, _ = load_model(tiny_model, "nf4", for_training=True)
    trainer = make_trainer(TuneConfig(eval_share=0.0, epochs=5), model, tokenizer, rows, [], Path("/tmp/unused"),
                           device_settings("cpu", 8), save_every=1)
    assert trainer.args.num_train_epochs == 1 and trainer.args.save_steps == 1
    assert type(trainer._get_train_sampler()).__name__ == "SequentialSampler"


def test_training_changes_lora_weights_and_leaves_the_base_alone(tiny_model, tmp_path):
    trainer = trainer_for(tiny_model, records(16), epochs=2, lr=1e-3, out=tmp_path)
    model = trainer.model
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    packed_before = [layer.weight.data.clone() for layer in linear4bit_layers(model)]
    trainer.train()
    after = dict(model.named_parameters())
    assert lora_before and all(not torch.equal(after[n], p) for n, p in lora_before.items())
    assert all(torch.equal(after[n], p) for n, p in base_before.items())
    packed_after = [layer.weight.data for layer in linear4bit_layers(model)]
    assert all(torch.equal(a, b) for a, b in zip(packed_after, packed_before, strict=True))
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)


def test_the_adapter_trains_in_the_compute_dtype_of_the_base(tiny_model):
    """trl casts a quantized model's adapter to bf16 (QLoRA's recipe for bf16 compute). On an fp32-compute CPU
    that made every LoRA matmul an emulated bf16 one, 3.3-3.9x slower: there the adapter stays fp32."""
    tokenizer = tokenizer_for(tiny_model)
    rows = [tokenize_pair(r, tokenizer) for r in records(8)]
    for dtype in (torch.float32, torch.bfloat16):
        model, _ = load_model(tiny_model, "nf4", for_training=True, dtype=dtype)
        trainer = make_trainer(TuneConfig(eval_share=0.0), model, tokenizer, rows, [], Path("/tmp/unused"),
                               device_settings("cpu", 8))
        assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {dtype}


def test_saved_adapter_reloads_with_the_same_logits(tiny_model, tmp_path):
    from peft import PeftModel

    trainer = trainer_for(tiny_model, records(16), epochs=3, lr=1e-2, out=tmp_path / "ck")
    trainer.train()
    trainer.model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[1, 500, 600, 700, 800]])
    trainer.model.eval()
    with torch.no_grad():
        trained = trainer.model(ids).logits.float()
        base, _ = load_model(tiny_model, "nf4")
        untouched = base(ids).logits.float()
        reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()(ids).logits.float()
    # bf16 compute leaves rounding noise; what the adapter learned must come back, far above that noise.
    learned = (trained - untouched).abs().max()
    assert learned > 0.05
    assert (reloaded - trained).abs().max() < 0.1 * learned
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    kinds = {name.rsplit(".", 1)[-1] for name in saved["target_modules"]}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has_bf16(), reason="bitsandbytes repacks NF4 weights only on CPUs with AVX-512 bf16: "
                    "here there is nothing to guard (test_models checks the guard on a forced repack)")
def test_training_after_an_eval_pass_still_learns(embedded_model, tmp_path):
    """bitsandbytes repacks NF4 weights for CPU inference on the first no-grad eval forward, and training on
    them silently stops learning (DESIGN.md: 2.65 -> 1.38 vs stuck at ~3.0). The guard must keep it learning."""
    trainer = trainer_for(embedded_model, records(16), held_out=records(4), epochs=12, lr=2e-3, out=tmp_path)
    trainer.evaluate()  # the eval pass that used to break training
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < 0.3 * losses[0], losses


def write_run(tmp_path, lines: list[str]) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"model": {"spec": "default"}, "source_tag": TAG}))
    (run / "qa.jsonl").write_text("".join(line + "\n" for line in lines))
    return run


@pytest.mark.parametrize("lines, args, message", [
    ([], [], "no usable pairs"),
    (["{not json"], [], "no usable pairs"),
    (["{not json", json.dumps(records(1)[0])], ["--strict"], "qa.jsonl:1: malformed line"),
    ([json.dumps({"question": "q"})], ["--strict"], "missing answer"),
])
def test_bad_pairs_are_one_clear_error(tmp_path, capsys, lines, args, message):
    run = write_run(tmp_path, lines)
    assert main(["tune", "--run", str(run), *args]) == 2
    assert message in capsys.readouterr().err


def test_malformed_lines_are_skipped_with_their_line_number(tmp_path, capsys, monkeypatch):
    from selfinstruct import tune

    run = write_run(tmp_path, [json.dumps(r) for r in records(3)] + ["{oops"])
    assert len(tune.load_pairs(run, strict=False)) == 3
    assert "qa.jsonl:4: skipped malformed line" in capsys.readouterr().err


def test_no_run_folder_and_unknown_model(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["tune"]) == 2
    assert "no run folder under outputs" in capsys.readouterr().err
    run = write_run(tmp_path, [json.dumps(r) for r in records(2)])
    assert main(["tune", "--run", str(run), "--model", "./no-such-model"]) == 2
    assert "no such model" in capsys.readouterr().err


@pytest.mark.slow
def test_real_tune_on_the_embedded_model_lowers_eval_loss(tmp_path, tiny_model, fake_engine):
    """Pairs from the sample corpus (scripted question writer, so this test spends its time on training),
    then a real QLoRA run of the embedded model through the CLI."""
    assert main(["generate", str(SAMPLE_EN), "--model", str(tiny_model), "--out", str(tmp_path / "run"),
                 "--max-windows", "4", "--window-tokens", "150", "--questions-per-window", "2",
                 # 4 restatements, as this fold check was measured on: with 8 the short run's answers turn into
                 # repeated source tags, whose near ties part the NF4 base from its float fold at the first word.
                 "--rewrites", "4"]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    manifest["model"]["spec"] = "default"  # train the embedded model on these pairs
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    result = subprocess.run([sys.executable, "-m", "selfinstruct", "tune", "--run", str(tmp_path / "run"),
                             "--epochs", "3", "--eval-share", "0.25", "--merge", "--no-gate"],
                            capture_output=True, text=True, cwd=REPO, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    adapter = tmp_path / "run" / "adapter"
    metrics = json.loads((adapter / "train_metrics.json").read_text())
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    assert metrics["last_train_loss"] < metrics["first_train_loss"]
    assert metrics["quantization"]["quantization"] == "bitsandbytes-nf4+double-quant"
    assert metrics["device_settings"]["optim"] == "adamw_torch" and metrics["tokens_per_second"] > 0
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "chat_template.jinja"):
        assert (adapter / name).is_file(), name
    assert "[INST]" in (adapter / "chat_template.jinja").read_text()
    assert not (adapter / ".checkpoints").exists()
    # tune --merge and the adapter as ask/serve load it (on the NF4 base) agree: along the served model's greedy
    # answers, the fold's log-probs stay far closer to the served ones than the adapter moved them from the base.
    # bf16 compute (a CPU with AVX-512 bf16) alone moves them by ~2 where the adapter moved them by ~30, so
    # near ties may part a greedy answer; a fold onto the original weights instead of the NF4 ones moved them 12.
    from selfinstruct.backends import Sampling
    from selfinstruct.backends.hf import HFGenerator

    pairs = [json.loads(line) for line in (tmp_path / "run" / "qa.jsonl").read_text().splitlines()][:6]
    served = HFGenerator(Path(metrics["base_model"]["path"]), "nf4", adapter=adapter)
    merged = HFGenerator(tmp_path / "run" / "merged", "none")
    prompts = [render_llama2(p["messages"][:2], served.tokenizer.bos_token, served.tokenizer.eos_token)
               for p in pairs]
    greedy = Sampling(max_new_tokens=24, stop=("[INST]",))
    answers = served.generate(prompts, greedy)
    served_lp = [answer_logprobs(served, p, a) for p, a in zip(prompts, answers, strict=True)]
    with served.base_only():
        base_lp = [answer_logprobs(served, p, a) for p, a in zip(prompts, answers, strict=True)]
        assert served.generate(prompts, greedy) != answers, "the adapter changes the answers it is compared on"
    folded_lp = [answer_logprobs(merged, p, a) for p, a in zip(prompts, answers, strict=True)]
    adapter_shift = min((s - b).abs().max() for s, b in zip(served_lp, base_lp, strict=True))
    fold_error = max((f - s).abs().max() for f, s in zip(folded_lp, served_lp, strict=True))
    # The teacher-forced log-probs are the check: greedy text is not. With the packages installed on 2026-12-03
    # the short run's answers are bare source tags and near ties, and the fold's greedy answers matched 3 of 6
    # while its log-probs stayed within the bound (the same at the previous commit).
    assert fold_error < 0.2 * adapter_shift, (fold_error, adapter_shift)


def answer_logprobs(generator, prompt: str, answer: str):
    """Log-probs over the vocabulary at each token of `answer` after `prompt` (teacher-forced)."""
    tokens = [generator.tokenizer(t, return_tensors="pt", add_special_tokens=False)["input_ids"]
              for t in (prompt, answer)]
    with torch.inference_mode():
        logits = generator.model(torch.cat(tokens, 1)).logits[0, tokens[0].shape[1] - 1:-1].float()
    return torch.log_softmax(logits, -1)


def test_neftune_noise_is_on_the_embeddings_during_training(tiny_model, tmp_path):
    from transformers import TrainerCallback

    seen = []

    class Spy(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            embeddings = model.get_input_embeddings()
            seen.append((len(embeddings._forward_hooks), getattr(embeddings, "neftune_noise_alpha", None)))

    trainer = trainer_for(tiny_model, records(8), epochs=1, out=tmp_path, neftune_alpha=5.0)
    trainer.add_callback(Spy())
    trainer.train()
    assert seen and all(hooks >= 1 and alpha == 5.0 for hooks, alpha in seen)


def test_too_few_optimizer_steps_are_flagged(capsys):
    warn_if_few_steps(18, TuneConfig(epochs=3, batch_size=8))  # 3 batches x 3 epochs: 9 steps
    assert "only 9 optimizer steps" in capsys.readouterr().err
    warn_if_few_steps(18, TuneConfig(epochs=8, batch_size=8))
    assert capsys.readouterr().err == ""


SLOW_TUNE = """
import sys, time
from selfinstruct import tune
from selfinstruct.cli import main

step_end = tune.ProgressBar.on_step_end
def slowly(self, *args, **kwargs):  # training steps of the tiny model take milliseconds: leave time to kill
    time.sleep(0.3)
    return step_end(self, *args, **kwargs)
tune.ProgressBar.on_step_end = slowly
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_mid_tune_then_rerun_resumes_from_the_checkpoint(tmp_path, tiny_model):
    """Killed after its first epoch's checkpoint, the same command resumes there and ends with the adapter an
    uninterrupted tune gives (optimizer, scheduler and RNG state are in the checkpoint)."""
    import os
    import signal
    import time

    from safetensors.torch import load_file

    script = tmp_path / "slow_tune.py"
    script.write_text(SLOW_TUNE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    lines = [json.dumps(r) for r in records(16)]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    clean, killed = write_run(tmp_path / "a", lines), write_run(tmp_path / "b", lines)
    args = ["tune", "--model", str(tiny_model), "--quantization", "none", "--epochs", "3", "--batch-size", "4",
            "--eval-share", "0", "--no-gate", "--learning-rate", "1e-3"]
    done = subprocess.run([sys.executable, str(script), *args, "--run", str(clean)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    proc = subprocess.Popen([sys.executable, str(script), *args, "--run", str(killed)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((killed / "adapter" / ".checkpoints").glob("*/trainer_state.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "adapter" / "train_metrics.json").exists(), "the kill should land mid-tune"
    again = subprocess.run([sys.executable, str(script), *args, "--run", str(killed)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from" in again.stderr and "checkpoint-4" in again.stderr
    metrics = [json.loads((run / "adapter" / "train_metrics.json").read_text()) for run in (clean, killed)]
    assert metrics[0]["steps"] == metrics[1]["steps"] == 12
    # Throughput counts what each process trained: all 3 epochs, then the 2 left after the checkpoint.
    for m, share in zip(metrics, (1, 2 / 3), strict=True):
        assert m["tokens_per_second"] * m["train_seconds"] == pytest.approx(share * m["trained_tokens"], rel=1e-3)
    weights = [load_file(run / "adapter" / "adapter_model.safetensors") for run in (clean, killed)]
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        assert torch.allclose(tensor, weights[1][name], atol=1e-5), name
    assert not (killed / "adapter" / ".checkpoints").exists()


def test_checkpoints_of_other_pairs_are_not_resumed(tmp_path):
    from selfinstruct.runs import resumable_checkpoint

    folder = tmp_path / ".checkpoints"
    assert resumable_checkpoint(folder, "a") is None
    (folder / "checkpoint-7").mkdir()
    (folder / "checkpoint-7" / "trainer_state.json").write_text("{}")
    (folder / "checkpoint-9").mkdir()  # cut off before its trainer state was written
    assert resumable_checkpoint(folder, "a") == str(folder / "checkpoint-7")
    assert resumable_checkpoint(folder, "b") is None
    assert not (folder / "checkpoint-7").exists() and (folder / "fingerprint").read_text() == "b"


@pytest.mark.slow  # two processes start torch and gloo: a minute or two here
def test_tune_under_accelerate_ddp_on_two_cpu_processes_gives_one_adapter_probe_loads(tmp_path, tiny_model):
    """`accelerate launch --num_processes 2` (gloo on the CPU): the same optimizer steps as one process, one
    adapter and one set of metrics from the main process, and probe answers with that adapter."""
    from .test_review import make_run

    run = make_run(tmp_path)
    launch = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "selfinstruct"]
    tune_args = ["tune", "--run", str(run), "--model", str(tiny_model), "--quantization", "none", "--epochs", "2",
                 "--batch-size", "2", "--eval-share", "0", "--no-gate"]
    done = subprocess.run(launch + tune_args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run / "adapter" / "train_metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 4  # 4 pairs x 2 epochs / 2 a step, as one process
    assert metrics["device_settings"]["per_device_train_batch_size"] == 1
    assert done.stderr.count("tune: 4 steps") == 1, "only the main process reports"
    shutil.copytree(run, tmp_path / "alone", ignore=shutil.ignore_patterns("adapter"))
    alone = subprocess.run([sys.executable, "-m", "selfinstruct", *tune_args[:2], str(tmp_path / "alone"),
                            *tune_args[3:]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert alone.returncode == 0, alone.stderr[-3000:]
    single = json.loads((tmp_path / "alone" / "adapter" / "train_metrics.json").read_text())
    # The loss is per answer token over the whole step in both: not halved by averaging over 2 processes.
    assert abs(metrics["first_train_loss"] - single["first_train_loss"]) < 0.2 * single["first_train_loss"]
    probed = subprocess.run([sys.executable, "-m", "selfinstruct", "probe", "--run", str(run), "--quantization", "none",
                             "--n-absent", "2", "--n-answerable", "2", "--no-base", "--no-gate",
                             "--max-new-tokens", "8"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert probed.returncode == 0, probed.stderr[-3000:]
    assert json.loads((run / "probe" / "report.json").read_text())["tuned"]["n_answerable"] > 0
