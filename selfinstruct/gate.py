"""The confidence gate: a score per question from the tuned model, a threshold calibrated at the end of `tune`
on data of the run itself (held-out phrasings of trained facts against hard negatives; probe asks those
phrasings too, as kind `held_out`, scored apart and kept out of its AUROC), and `adapter/gate.json`. Where the
tuned model answers (probe, and later ask/serve), a question scoring under the threshold gets the refusal
instead of the model's answer.

Signals (each also computed with the adapter off, as the base-model control: a signal the base model has as
well tracks how odd a question looks, not what the tuned model knows):
- margin: mean log-prob of the model's own greedy answer minus that of the refusal, both after the question.
  The tuned model was trained to refuse absent things, so how far it leans towards its answer is its belief.
- answer_logprob: mean log-prob of its own greedy answer alone (SliCK-style confidence in what it says).
Beside the signal, the name check: a question naming something the corpus never mentions (entities.NameCheck,
against the corpus's names saved in gate.json) is refused whatever its score. The tuned model leans towards an
answer for a made-up name that looks like the corpus's own (one person's given name with another's family name)
as much as for a real one; the corpus itself says plainly that it never names it."""

from __future__ import annotations

import math
import sys
import time
from functools import lru_cache
from pathlib import Path

from .entities import NameCheck, name_inventory
from .runs import Manifest, read_json, write_json, write_jsonl

SIGNALS = ("margin", "answer_logprob")
GATE_FILE = "gate.json"
CALIBRATION_FILE = "gate_calibration.jsonl"  # what the gate was fitted on, one row per question
SCORED_TOKENS = 16  # the key comes first in a trained answer; what follows is its supporting clause


def auroc(positives: list[float], negatives: list[float]) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half)."""
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return round(wins / (len(positives) * len(negatives)), 4)


def choose_threshold(known_scores: list[float], target: float) -> float:
    """The score under which `target` of the known questions fall: the gate refuses at most that share of
    what the raw model answers right."""
    return threshold_refusing(known_scores, share_of(target, len(known_scores)))


def share_of(target: float, n: int) -> int:
    """How many of `n` a share `target` is, whole: 0.29 of 100 is 29, though 0.29 * 100 is 28.999..."""
    return math.floor(target * n + 1e-9)


def threshold_refusing(scores: list[float], count: int) -> float:
    """The score under which the lowest `count` of `scores` fall."""
    ranked = sorted(scores)
    if not ranked:
        return 0.0
    if count == 0:
        return ranked[0] - 1e-6
    return (ranked[count - 1] + ranked[count]) / 2 if count < len(ranked) else ranked[-1] + 1e-6


def continuation_logprobs(model, tokenizer, prompts: list[str], continuations: list[str], batch_size: int = 16,
                          max_tokens: int = SCORED_TOKENS) -> list[float]:
    """Mean log-prob per token of each continuation's first `max_tokens` tokens after its prompt."""
    import torch

    scores = []
    for i in range(0, len(prompts), batch_size):
        rows = []
        for prompt, cont in zip(prompts[i:i + batch_size], continuations[i:i + batch_size], strict=True):
            p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            c = tokenizer(prompt + cont, add_special_tokens=False)["input_ids"][len(p):][:max_tokens]
            rows.append((p + c, len(p), len(c)))
        width = max(len(ids) for ids, _, _ in rows)
        pad = tokenizer.pad_token_id or 0
        ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _, _ in rows])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _, _ in rows])
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        for row, (_, start, length) in enumerate(rows):
            if length == 0:
                scores.append(-20.0)
                continue
            positions = torch.arange(start - 1, start - 1 + length)
            targets = ids[row, start:start + length].to(logprobs.device)
            scores.append(logprobs[row, positions, targets].mean().item())
    return scores


def signal_scores(generator, prompts: list[str], answers: list[str], refusal: str, tag: str,
                  batch_size: int = 16) -> dict[str, list[float]]:
    """Every signal for each (prompt, own answer); needs a transformers engine (it reads the logits)."""
    model, tok = generator.model, generator.tokenizer
    own = continuation_logprobs(model, tok, prompts, [f" {tag} {a}" for a in answers], batch_size)
    refuse = continuation_logprobs(model, tok, prompts, [f" {tag} {refusal}"] * len(prompts), batch_size)
    return {"margin": [round(a - r, 4) for a, r in zip(own, refuse, strict=True)],
            "answer_logprob": [round(a, 4) for a in own]}


def write_gate(adapter_dir: Path, gate: dict | None, calibration: list[dict] = ()) -> None:
    """gate.json, and the calibration rows beside it (those also when too few were known to set a gate)."""
    if calibration:
        write_jsonl(adapter_dir / CALIBRATION_FILE, list(calibration))
    if gate is not None:
        write_json(adapter_dir / GATE_FILE, {**gate, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})


def read_gate(adapter_dir: Path) -> dict | None:
    path = adapter_dir / GATE_FILE
    return read_json(path) if path.is_file() else None


def usable_gate(adapter_dir: Path, generator, wanted: bool, label: str) -> dict | None:
    """The gate.json tune wrote, or None with a line saying why no gate is applied."""
    gate = read_gate(adapter_dir) if wanted else None
    if wanted and gate is None:
        print(f"{label}: no {adapter_dir}/gate.json: no gate is applied (tune calibrates one)", file=sys.stderr)
    if gate is not None and not hasattr(generator, "model"):
        print(f"{label}: the gate reads logits, which needs --backend transformers: no gate is applied",
              file=sys.stderr)
        gate = None
    return gate


def decision(gate: dict | None, score: float | None, question: str) -> tuple[bool, list[str]]:
    """The gate's decision for one question, and the names it holds that the corpus never mentions: refuse when
    its score is under the threshold, or when it has such a name (a gate.json without "names" has no name
    check)."""
    if gate is None:
        return False, []
    names = unknown_names(gate, question)
    return score is not None and score < gate["threshold"] or bool(names), names


def unknown_names(gate: dict | None, question: str) -> list[str]:
    """The names in `question` that the gate's corpus names do not hold."""
    return _name_check(tuple(gate["names"])).unknown(question) if gate and gate.get("names") else []


@lru_cache(maxsize=4)
def _name_check(names: tuple[str, ...]) -> NameCheck:
    return NameCheck(list(names))


def calibrate(scores: dict[str, dict[str, list[float]]], known: list[bool], negative: list[bool], target: float,
              counts: dict, named_absent: list[bool] | None = None) -> dict | None:
    """Pick the signal whose tuned scores best separate what the raw tuned model answers right (`known`) from
    the hard negatives, and its threshold for a `target` known-refusal rate. `scores[model][signal]` holds
    one score per calibration question, for model tuned and base (the control). Known questions the name check
    refuses (`named_absent`) spend the target first; the threshold may refuse only what is left of it."""
    report = {}
    for signal in SIGNALS:
        report[signal] = {}
        for model, by_signal in scores.items():
            values = by_signal[signal]
            report[signal][model] = auroc([v for v, k in zip(values, known, strict=True) if k],
                                          [v for v, n in zip(values, negative, strict=True) if n])
    usable = [s for s in SIGNALS if report[s].get("tuned") is not None]
    if not usable or sum(known) < 5:
        return None
    best = max(usable, key=lambda s: report[s]["tuned"])
    tuned = scores["tuned"][best]
    named = named_absent or [False] * len(known)
    by_names = sum(k and u for k, u in zip(known, named, strict=True))
    left = [v for v, k, u in zip(tuned, known, named, strict=True) if k and not u]
    threshold = threshold_refusing(left, max(0, share_of(target, sum(known)) - by_names))
    refused_negatives = sum(v < threshold or u for v, n, u in zip(tuned, negative, named, strict=True) if n)
    return {"signal": best, "threshold": round(threshold, 4), "target_known_refusal": target,
            "calibration_auroc": report[best]["tuned"], "base_control_auroc": report[best].get("base"),
            "auroc": report, "counts": {**counts, "known": sum(known), "negatives": sum(negative),
                                        "known_refused_by_names": by_names,
                                        "negatives_refused_by_names": sum(n and u for n, u in
                                                                          zip(negative, named, strict=True)),
                                        "negatives_refused_by_gate": refused_negatives}}


def calibrate_run(model, tokenizer, manifest: Manifest, records: list[dict], held_out: list[dict], corpus_text: str,
                  target: float, seed: int, name_check: bool = True) -> tuple[dict | None, list[dict]]:
    """At the end of tune: the tuned model answers held-out phrasings of trained facts (the ones it gets right
    are the known ones) and hard negatives of the calibration share (recombined and real-world names, false
    premises, held-out refusal pairs); each signal is scored with the adapter on and off; the best signal and
    its threshold go into gate.json. Of what probe asks only the held-out phrasings (kind `held_out`, apart
    from its rates) are here. Also returns one row per calibration question (its answer, label and scores), so
    a person can see what the gate was fitted on and another threshold rule can be tried without training
    again. With `name_check`, the corpus's names go into gate.json too, and a question naming anything else is
    refused whatever its score."""
    import random

    from .backends.hf import HFGenerator
    from .entities import corpus_entities
    from .filters import gives_key
    from .negatives import false_premises, swap_in_absent
    from .probe import ask, is_refusal, render_questions
    from .prompts import refusal as refusal_text

    tag, language = manifest.tag, manifest.language
    positives = [r for r in held_out if r["answerable"] and r.get("key")]
    if len(positives) < 10:
        print(f"tune: only {len(positives)} held-out phrasings to calibrate on: no gate written", file=sys.stderr)
        return None, []
    rng = random.Random(seed)
    entities = corpus_entities(corpus_text, language)
    answerable = [r for r in records if r["answerable"]]
    hard = swap_in_absent(answerable, len(positives), rng, language, corpus_text.lower(), entities, "calibrate")
    premises = false_premises(answerable, max(1, len(positives) // 4), rng, corpus_text, entities)
    negatives = ([q for _, q, *_ in hard] + [q for _, q, _ in premises]
                 + [r["question"] for r in held_out if not r["answerable"]])
    refusals = len(negatives) - len(hard) - len(premises)
    kinds = (["held_out_phrasing"] * len(positives) + [origin for *_, origin in hard]
             + ["false_premise"] * len(premises) + ["held_out_refusal"] * refusals)
    questions = [r["question"] for r in positives] + negatives
    generator = HFGenerator(None, model=model, tokenizer=tokenizer)
    texts = render_questions(tokenizer, questions, manifest.system_prompt, tag, "tuned")
    answers = ask(generator, texts, tag, "calibrate")
    known = [gives_key(a, r["key"]) and not is_refusal(a) for r, a in zip(positives, answers, strict=False)]
    known += [False] * len(negatives)
    negative = [False] * len(positives) + [True] * len(negatives)
    refusal = refusal_text(tag, language)
    scores = {"tuned": signal_scores(generator, texts, answers, refusal, tag)}
    with generator.base_only():
        scores["base"] = signal_scores(generator, texts, answers, refusal, tag)
    counts = {"held_out_phrasings": len(positives), "recombined_or_real_world": len(hard),
              "false_premises": len(premises), "held_out_refusals": refusals,
              "raw_refusals_of_negatives": sum(is_refusal(a) for a in answers[len(positives):])}
    names = name_inventory(corpus_text, language) if name_check else []
    absent = [unknown_names({"names": names}, q) for q in questions]  # as probe and ask will decide: no names, no check
    rows = [{"question": q, "kind": kind, "answer": a, "known": k, "negative": n, "unknown_names": u,
             **{model: {signal: by_signal[signal][i] for signal in SIGNALS} for model, by_signal in scores.items()}}
            for i, (q, kind, a, k, n, u) in enumerate(zip(questions, kinds, answers, known, negative, absent,
                                                          strict=True))]
    gate = calibrate(scores, known, negative, target, counts, [bool(u) for u in absent])
    if gate is None:
        print(f"tune: the tuned model got {sum(known)} of {len(positives)} held-out phrasings right: too few to "
              "calibrate a gate on; none written", file=sys.stderr)
        return None, rows
    gate["calibration_names"] = sorted({check.name for _, _, check, _, _ in hard} | {e for _, _, e in premises})
    if names:
        gate["names"] = names
    return gate, rows
