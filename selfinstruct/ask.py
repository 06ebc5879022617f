"""`selfinstruct ask`: the run's tuned adapter answers questions closed-book, in the template it was trained on,
behind the confidence gate tune calibrated: a question scoring under the gate's threshold gets the refusal."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import prompts
from .config import UserError
from .probe import ask, is_refusal, load_adapter_base, render_questions
from .runs import Manifest, pick_run, read_jsonl


def read_questions(config) -> list[str]:
    """The question given, the lines of --file (JSONL objects with a `question`, or plain text), or stdin."""
    if config.question:
        questions = [config.question]
    elif config.file:
        path = Path(config.file)
        try:
            first = path.read_text(encoding="utf-8").lstrip()[:1]
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read {path}: {getattr(e, 'strerror', None) or 'not UTF-8 text'}") from None
        if first == "{":
            records = read_jsonl(path, strict=True, required=("question",), fix="fix the file")
            questions = [r["question"] for r in records]
        else:
            questions = path.read_text(encoding="utf-8").splitlines()
    elif not sys.stdin.isatty():
        questions = sys.stdin.read().splitlines()
    else:
        raise UserError('ask needs a question: selfinstruct ask "Who built the lighthouse?" (or --file, or stdin)')
    questions = [q.strip() for q in questions if isinstance(q, str) and q.strip()]
    if not questions:
        raise UserError("no question to answer (empty input)")
    return questions


def answer_questions(generator, questions: list[str], manifest: Manifest, gate: dict | None,
                     max_new_tokens: int = 64, batch_size: int = 16, progress: bool = True) -> list[dict]:
    """One record a question: the answer (the refusal where the gate says no), whether it is a refusal, and the
    gate's score and threshold. The gate reads logits, so it needs the transformers engine."""
    from .gate import decision, signal_scores

    tag, language = manifest.tag, manifest.language
    texts = render_questions(generator.tokenizer, questions, manifest.system_prompt, tag, "tuned")
    answers = ask(generator, texts, tag, "tuned", max_new_tokens, batch_size, progress)
    refusal = prompts.refusal(tag, language)
    scores = [None] * len(questions)
    if gate:
        scores = signal_scores(generator, texts, answers, refusal, tag, batch_size)[gate["signal"]]
    rows = []
    for question, answer, score in zip(questions, answers, scores, strict=True):
        gated, names = decision(gate, score, question)
        rows.append({"question": question, "answer": refusal if gated else answer,
                     "refused": gated or is_refusal(answer), "gated": gated, "confidence": score,
                     "unknown_names": names,
                     "threshold": gate["threshold"] if gate else None, "signal": gate["signal"] if gate else None})
    return rows


def load_tuned(config, label: str):
    """The run's manifest, an engine with its adapter, and the gate to apply (or None, said on stderr)."""
    from .backends import load_generator
    from .gate import usable_gate

    run_dir = pick_run(config.run)
    manifest = Manifest.read(run_dir)
    adapter_dir = Path(config.adapter) if config.adapter else run_dir / "adapter"
    base = load_adapter_base(adapter_dir, manifest)
    generator = load_generator(base.path, config.backend, config.quantization, config.batch_size,
                               adapter=adapter_dir)
    return run_dir, manifest, generator, usable_gate(adapter_dir, generator, config.gate, label)


def run(config) -> int:
    questions = read_questions(config)  # bad input is named before the model loads
    _, manifest, generator, gate = load_tuned(config, "ask")
    rows = answer_questions(generator, questions, manifest, gate, config.max_new_tokens, config.batch_size)
    for row in rows:
        if config.json:
            print(json.dumps(row, ensure_ascii=False))
        elif len(rows) == 1:
            print(row["answer"])
        else:
            print(f"Q: {row['question']}\nA: {row['answer']}\n")
    return 0
