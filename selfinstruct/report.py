"""probe's outputs: probes.jsonl, report.json, report.md (a table a person reads in ten seconds, and the worst
hallucinations verbatim) and report.png (base vs tuned bars)."""

from __future__ import annotations

import time
from pathlib import Path

from .backends import Sampling, chat_prompt
from .runs import write_json, write_jsonl, write_text

CHART = [("right_rate", "right (answerable)"), ("refusal_rate", "refused (absent)"), ("wrong_rate", "wrong (all)"),
         ("over_refusal_rate", "over-refusal")]
ROWS = [("key_accuracy", "key accuracy: the answer's first sentence holds the key (answerable)"),
        ("paraphrase_key_accuracy", "key accuracy, new phrasings"),
        ("held_out_key_accuracy", "key accuracy, held-out phrasings of trained facts"),
        ("held_out_model_key_accuracy", "... of them written by the model"),
        ("verbatim_key_accuracy", "key accuracy, training questions verbatim"),
        ("right_rate", "right (answerable; higher is better)"),
        ("refusal_rate", "refusal rate (absent; higher is better)"),
        ("wrong_rate", "wrong answers over all probes (lower is better)"),
        ("known_refusal_rate", "known refusals: refused what the raw tuned model gets right"),
        ("hallucination_rate", "hallucination rate (absent; lower is better)"),
        ("over_refusal_rate", "over-refusal rate (answerable; lower is better)"),
        ("selectivity", "selectivity: refusal minus over-refusal (0 = refuses blind)"),
        ("answerable_f1", "answer token F1 (answerable)"), ("exact_match", "key's content words in the first sentence"),
        ("empty_rate", "empty answers (all probes; lower is better)"),
        ("n_absent", "absent probes"), ("n_answerable", "answerable probes")]
COLORS = {"base": "#9aa5b1", "tuned": "#2f6fb0", "gated": "#2a9d5b"}


def _mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def _share(rows, key, value):
    return round(sum(r.get(key) == value for r in rows) / len(rows), 4) if rows else None


def wilson(rate: float | None, n: int, z: float = 1.96) -> list[float] | None:
    """The 95% Wilson score interval of a share measured on n questions: on make eval's 60 answerable ones,
    0.20 means anything from 0.12 to 0.32, and two make eval runs of the same defaults differed by 0.08."""
    if rate is None or n == 0:
        return None
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((rate * (1 - rate) + z * z / (4 * n)) / n) ** 0.5 / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def metrics(probes: list[dict], model: str, kinds=("absent", "answerable"), reference: str = "tuned") -> dict:
    mine = [p for p in probes if p["kind"] in kinds]
    absent = [p["results"][model] for p in mine if not p["answerable"]]
    answerable = [p for p in mine if p["answerable"]]
    results = [p["results"][model] for p in answerable]
    judged_answerable = [r for r in results if r.get("outcome")]  # a user's question without a key has none
    judged_all = [r for r in absent + results if r.get("outcome")]
    # Held-out phrasings chose tune's checkpoint and calibrated the gate: scored apart, never in the headline rates.
    held_out = [p for p in probes if p["kind"] == "held_out"] if "answerable" in kinds else []

    def by_origin(origin, key):
        return _mean([p["results"][model].get(key) for p in answerable if p["origin"] == origin])

    def scored(origin):  # how many of an origin's answers key accuracy was read from
        return sum(p["results"][model].get("key_match") is not None for p in answerable if p["origin"] == origin)

    out = {"hallucination_rate": _share(absent, "verdict", "hallucinated"),
           "refusal_rate": _share(absent, "verdict", "refused"),
           "over_refusal_rate": _share(results, "verdict", "over_refusal"),
           "answerable_f1": _mean([r.get("f1") for r in results]),
           "exact_match": _mean([r.get("exact") for r in results]),
           "n_absent": len(absent), "n_answerable": len(answerable), "verbatim_f1": by_origin("verbatim", "f1"),
           "paraphrase_f1": by_origin("paraphrase", "f1"), "verbatim_exact": by_origin("verbatim", "exact"),
           "paraphrase_exact": by_origin("paraphrase", "exact"),
           "empty_rate": _share(absent + results, "verdict", "empty"),
           "key_accuracy": _mean([r.get("key_match") for r in results]),
           "verbatim_key_accuracy": by_origin("verbatim", "key_match"),
           "paraphrase_key_accuracy": by_origin("paraphrase", "key_match"),
           "held_out_key_accuracy": _mean([p["results"][model].get("key_match") for p in held_out]),
           "held_out_model_key_accuracy": _mean([p["results"][model].get("key_match") for p in held_out
                                                 if p.get("shape") == "model"]),
           "right_rate": _share(judged_answerable, "outcome", "right"),
           "wrong_rate": _share(judged_all, "outcome", "wrong")}
    counts = {"right_rate": len(judged_answerable), "refusal_rate": len(absent), "wrong_rate": len(judged_all),
              "paraphrase_key_accuracy": scored("paraphrase"), "verbatim_key_accuracy": scored("verbatim")}
    out["intervals"] = {key: wilson(out[key], n) for key, n in counts.items()}
    # Does the model refuse what it was not taught more than what it was? A uniform refusal habit scores 0.
    refused, over_refused = out["refusal_rate"], out["over_refusal_rate"]
    out["selectivity"] = None if refused is None or over_refused is None else round(refused - over_refused, 4)
    # The cost of a gate: refusals of what the raw tuned model answers right.
    known = [p["results"][model] for p in answerable
             if reference in p["results"] and p["results"][reference].get("outcome") == "right"]
    out["known_refusal_rate"] = _share(known, "outcome", "refused") if model != "base" else None
    out["by_origin"] = {origin: {"n": len(rows), "refused": _share([p["results"][model] for p in rows], "outcome",
                                                                    "refused"),
                                 "right": _share([p["results"][model] for p in rows], "outcome", "right"),
                                 "key_accuracy": _mean([p["results"][model].get("key_match") for p in rows])}
                        for origin in sorted({p["origin"] for p in mine + held_out})
                        for rows in [[p for p in mine + held_out if p["origin"] == origin]]}
    said_refusal = [r.get("judge") for r in absent if r.get("judge") is not None]
    said_right = [r.get("judge") for r in results if r.get("judge") is not None]
    if said_refusal or said_right:  # --judge: the generator model's own verdicts, beside the rule-based ones
        out["judge_hallucination_rate"] = _mean([float(not j) for j in said_refusal])
        out["judge_accuracy"] = _mean([float(j) for j in said_right])
    return out


def write(out_dir: Path, probes: list[dict], models: list[str], engine: dict, source_tag: str,
          gate: dict | None = None) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "probes.jsonl", probes)
    summary = {model: metrics(probes, model) for model in models}
    for model in ("base", "gated"):
        summary.setdefault(model, None)
    if any(p["kind"] == "user" for p in probes):
        summary["user"] = {model: metrics(probes, model, kinds=("user",)) for model in models}
    summary.update(source_tag=source_tag, engine=engine, created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                   gate=gate, worst_hallucinations=worst(probes))
    write_json(out_dir / "report.json", summary)
    write_text(out_dir / "report.md", markdown(summary, models))
    chart(summary, models, out_dir / "report.png", probes if gate else None)
    return summary


def worst(probes: list[dict], n: int = 5) -> list[dict]:
    """The tuned model's most elaborate inventions: swapped-entity probes first (they look like real
    questions), then by answer length."""
    bad = [p for p in probes
           if p["kind"] == "absent" and p["results"].get("tuned", {}).get("verdict") == "hallucinated"]
    bad.sort(key=lambda p: (p["origin"] != "swapped", -len(p["results"]["tuned"]["answer"])))
    return [{"question": p["question"], "entity": p["entity"], "origin": p["origin"],
             "answer": p["results"]["tuned"]["answer"]} for p in bad[:n]]


def _cell(value) -> str:
    if value is None:
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.2f}".replace("-0.00", "0.00")


def format_table(summary: dict, models=("base", "tuned", "gated")) -> str:
    models = [m for m in models if summary.get(m)]
    lines = [f"| metric | {' | '.join(models)} |", "|---|" + "---|" * len(models)]
    for key, label in ROWS:
        lines.append(f"| {label} | {' | '.join(_cell(summary[m].get(key)) for m in models)} |")
    return "\n".join(lines)


def interval_line(summary: dict, models) -> str:
    """How far each headline rate could move by chance alone: one line under a table of few questions."""
    models = [m for m in models if summary.get(m)]
    parts = []
    for key, label in (("right_rate", "right"), ("refusal_rate", "refused absent"), ("wrong_rate", "wrong"),
                       ("paraphrase_key_accuracy", "new phrasings"), ("verbatim_key_accuracy", "verbatim")):
        cells = [f"{m} {iv[0]:.2f}-{iv[1]:.2f}" for m in models if (iv := summary[m].get("intervals", {}).get(key))]
        if cells:
            parts.append(f"{label}: {', '.join(cells)}")
    return f"95% intervals (Wilson): {'; '.join(parts)}" if parts else ""


def origin_table(summary: dict, models) -> str:
    """Refusal of each kind of absent question, and key accuracy of each kind of answerable one."""
    models = [m for m in models if summary.get(m)]
    lines = [f"| origin (n) | {' | '.join(models)} |", "|---|" + "---|" * len(models)]
    for origin, row in summary[models[0]]["by_origin"].items():
        key = "key_accuracy" if row["key_accuracy"] is not None else "refused"
        what = "key accuracy" if key == "key_accuracy" else "refused"
        cells = " | ".join(_cell(summary[m]["by_origin"][origin][key]) for m in models)
        lines.append(f"| {origin} ({row['n']}), {what} | {cells} |")
    return "\n".join(lines)


def markdown(summary: dict, models: list[str]) -> str:
    parts = [f"# Hallucination probes: {summary['source_tag']}", "",
             f"Engine: {summary['engine'].get('engine')} ({summary['engine'].get('quantization')}), greedy decoding, "
             "closed-book system prompt.", ""]
    gate = summary.get("gate")
    if gate:
        parts += [f"Gate: `{gate['signal']}` under {gate['threshold']} is refused (calibrated at tune for a "
                  f"{gate['target_known_refusal']:.0%} known-refusal rate; AUROC on these probes "
                  f"{_cell(gate['probe_auroc']['tuned'])}, base-model control {_cell(gate['probe_auroc']['base'])})"
                  + (f"; so is a question naming something the corpus never mentions ({gate['refused_for_names']} "
                     "of these probes)." if "refused_for_names" in gate else "."), ""]
    else:
        parts += ["Gate: off (no gate.json, or --no-gate).", ""]
    parts += [format_table(summary, models), "", interval_line(summary, models), "", "### By origin", "",
              origin_table(summary, models), ""]
    if summary.get("user"):
        parts += ["## Your probe set", "", format_table(summary["user"], models), "",
                  interval_line(summary["user"], models), "", origin_table(summary["user"], models), ""]
    parts += ["## Five worst hallucinations of the tuned model", ""]
    if not summary["worst_hallucinations"]:
        parts.append("None: the tuned model refused every absent-entity probe.")
    for item in summary["worst_hallucinations"]:
        why = (f"the corpus never says this of {item['entity']}" if item["origin"] == "false_premise"
               else f"{item['entity']} is not in the corpus")  # a false premise names a corpus entity
        parts.append(f"- **{item['question']}** ({why})  \n  {item['answer']}")
    return "\n".join(parts) + "\n"


def risk_coverage(probes: list[dict]) -> list[tuple[float, float, float]]:
    """(threshold, share of probes answered, share of those answers right) for every gate threshold: the
    tuned model's answers kept where their gate score is at least the threshold (and the name check let the
    question through: it refuses at every threshold). The held-out phrasings calibrated the gate: left out."""
    rows = sorted(((p["results"]["gated"]["gate_score"], p["results"]["tuned"].get("outcome"),
                    bool(p["results"]["gated"].get("unknown_names")))
                   for p in probes if "gated" in p["results"] and p["kind"] != "held_out"), reverse=True)
    points, answered, right = [], 0, 0
    for score, outcome, named_absent in rows:
        if outcome in ("right", "wrong") and not named_absent:
            answered += 1
            right += outcome == "right"
            points.append((score, answered / len(rows), right / answered))
    return points


def chart(summary: dict, models: list[str], path: Path, probes: list[dict] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = risk_coverage(probes) if probes else []
    fig, axes = plt.subplots(1, 2 if curve else 1, figsize=(11 if curve else 7, 3.8), dpi=120, squeeze=False)
    ax = axes[0][0]
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        values = [summary[model][key] or 0.0 for key, _ in CHART]
        bars = ax.bar([x + i * width for x in range(len(CHART))], values, width, label=model, color=COLORS[model])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(CHART))], [label for _, label in CHART],
                  fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_title(f"{summary['source_tag']}: {' vs '.join(models)}")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    if curve:
        ax = axes[0][1]
        ax.plot([c for _, c, _ in curve], [a for _, _, a in curve], color=COLORS["tuned"])
        gate = summary["gate"]
        at = [(c, a) for s, c, a in curve if s >= gate["threshold"]]
        if at:
            ax.scatter([at[-1][0]], [at[-1][1]], color=COLORS["gated"], zorder=3, label="gate")
        ax.set_xlabel("share of probes answered (coverage)")
        ax.set_ylabel("share of answers right")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"risk-coverage, gate signal: {gate['signal']}"
                     + (" + name check" if "refused_for_names" in gate else ""))
        ax.legend(frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


JUDGE_ASK = {
    "en": ("Question: {q}\nReference answer: {ref}\nCandidate answer: {a}\n\nDoes the candidate answer state the "
           "same fact as the reference answer? Reply yes or no.",
           "Question: {q}\nAnswer: {a}\n\nDoes the answer say that it cannot answer or does not know? "
           "Reply yes or no."),
    "zh": ("问题：{q}\n参考答案：{ref}\n候选答案：{a}\n\n候选答案和参考答案说的是同一个事实吗？只回答是或否。",
           "问题：{q}\n回答：{a}\n\n这个回答是否表示无法回答或不知道？只回答是或否。"),
}


def llm_judge(generator, probes, models: list[str], language: str) -> None:
    """The generator model as a judge: `judge` is its yes/no to "is this the reference fact?" (answerable) or
    "is this a refusal?" (absent entity). Reported beside the rule-based verdicts, never instead of them."""
    jobs = []
    same, refuses = JUDGE_ASK[language]
    for p in probes:
        if p.answerable and not p.reference or p.kind == "held_out":
            continue  # nothing to compare with (a refusal verdict would be read as "right"), or not reported
        for model in models:
            result = p.results[model]
            ask = (same.format(q=p.question, ref=p.reference, a=result["answer"]) if p.answerable
                   else refuses.format(q=p.question, a=result["answer"]))
            jobs.append((result, chat_prompt(generator.tokenizer, [{"role": "user", "content": ask}])))
    if not jobs:
        return
    with generator.base_only():
        replies = generator.generate([prompt for _, prompt in jobs], Sampling(max_new_tokens=4))
    for (result, _), reply in zip(jobs, replies, strict=True):
        word = reply.strip().lower()
        result["judge"] = True if word.startswith(("yes", "是")) else False if word.startswith(("no", "否")) else None
