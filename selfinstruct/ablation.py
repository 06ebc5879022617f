"""`make ablation`: what each part of the training set adds, on one generate output (made with --rewrites 8 or
more). Each row trains on a subset of the same run with `selfinstruct tune` and is scored by `selfinstruct
probe` on a hand-written question file, in its own run folder; one table, `ablation.json` and `ablation.png`.

    python -m selfinstruct.ablation RUN QUESTIONS [--rows one-phrasing,pairs,text,rw1,rw4,rw8] [--seeds 0,1]
                                    [--out outputs/ablation] [-- extra tune flags]

Six rows of five tune epochs take hours on a 2-core CPU (about 65 minutes each with NF4) and minutes on a
GPU; README "Ablation on the whole eval corpus" has the figures."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from statistics import mean

from .runs import read_json, read_jsonl, write_json, write_jsonl

# row -> (keep only the first phrasing of each fact, restatements per window, train on texts at all)
ROWS = {"one-phrasing": (True, 0, False), "pairs": (False, 0, False), "text": (False, 0, True),
        "rw1": (False, 1, True), "rw4": (False, 4, True), "rw8": (False, 8, True)}
LABELS = {"one-phrasing": "QA pairs, 1 phrasing per fact", "pairs": "QA pairs, all phrasings",
          "text": "+ window text", "rw1": "+ window text + 1 restatement", "rw4": "+ window text + 4 restatements",
          "rw8": "+ window text + 8 restatements"}
COLUMNS = ("steps", "hand_key_accuracy", "own_new_phrasings", "hand_absent_refused", "hand_wrong")


def first_phrasings(pairs: list[dict]) -> list[dict]:
    """One answerable pair per fact (the first kept), and every refusal pair."""
    seen, kept = set(), []
    for pair in pairs:
        fact = pair.get("fact_id") if pair["answerable"] else None
        if fact not in seen:
            kept.append(pair)
        if fact:
            seen.add(fact)
    return kept


def restatement_number(text: dict) -> int:
    return int(text["id"].rsplit("-t", 1)[1] or -1)  # "w0003-t" is the window itself, "w0003-t2" a restatement


def make_row(source: Path, target: Path, row: str) -> None:
    """A run folder for one row: the source's manifest, and its pairs and texts cut down as the row says."""
    one_phrasing, rewrites, with_texts = ROWS[row]
    pairs = read_jsonl(source / "qa.jsonl")
    with_texts = with_texts and (source / "texts.jsonl").is_file()
    texts = [t for t in (read_jsonl(source / "texts.jsonl") if with_texts else []) if restatement_number(t) < rewrites]
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copy(source / "manifest.json", target / "manifest.json")
    for name, records in (("qa.jsonl", first_phrasings(pairs) if one_phrasing else pairs), ("texts.jsonl", texts)):
        write_jsonl(target / name, records)


def run_row(target: Path, row: str, seed: int, questions: Path, tune_flags: list[str]) -> dict:
    cli = [sys.executable, "-m", "selfinstruct"]
    texts = [] if ROWS[row][2] else ["--no-texts"]
    subprocess.run([*cli, "tune", "--run", str(target), "--seed", str(seed), *texts, *tune_flags], check=True)
    # probe loads the base as tune trained on it: the same --quantization
    quantization = tune_flags[tune_flags.index("--quantization"):][:2] if "--quantization" in tune_flags else []
    subprocess.run([*cli, "probe", "--run", str(target), "--questions", str(questions), "--no-base", "--n-held-out",
                    "0", *quantization], check=True)  # the table reads no held-out phrasings
    report = read_json(target / "probe" / "report.json")
    trained = read_json(target / "adapter" / "train_metrics.json")
    tuned, hand = report["tuned"], report["user"]["tuned"]
    return {"row": row, "seed": seed, "steps": trained["steps"], "best_eval_loss": trained.get("best_eval_loss"),
            "hand_key_accuracy": hand["key_accuracy"], "hand_absent_refused": hand["refusal_rate"],
            "hand_wrong": hand["wrong_rate"], "own_new_phrasings": tuned["paraphrase_key_accuracy"],
            "own_verbatim": tuned["verbatim_key_accuracy"]}


def by_row(results: list[dict]) -> dict[str, list[dict]]:
    """Each row's results (one per seed), rows in the order they ran."""
    grouped: dict[str, list[dict]] = {}
    for r in results:
        grouped.setdefault(r["row"], []).append(r)
    return grouped


def spread(values: list[float], form: str) -> str:
    return f"{mean(values):{form}} ({min(values):{form}}-{max(values):{form}})"


def table(results: list[dict]) -> str:
    """A line per row and seed, then, for each row run with several seeds, its mean and range: two seeds of
    one row differ by up to 0.15 in hand-written key accuracy (README), more than most changes measured."""
    lines = ["| training set | seed | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for r in results:
        lines.append(f"| {LABELS[r['row']]} | {r['seed']} | " + " | ".join(str(r[c]) for c in COLUMNS) + " |")
    for row, runs in by_row(results).items():
        if len(runs) > 1:
            cells = [spread([r[c] for r in runs], ".0f" if c == "steps" else ".2f") for c in COLUMNS]
            lines.append(f"| {LABELS[row]} | mean of {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = by_row(results)
    rows = list(groups)
    fig, ax = plt.subplots(figsize=(8, 4))
    for offset, (key, label) in enumerate((("hand_key_accuracy", "hand-written key accuracy"),
                                           ("own_new_phrasings", "new phrasings key accuracy"),
                                           ("hand_wrong", "hand-written wrong"))):
        values = [[r[key] for r in runs] for runs in groups.values()]
        means = [mean(v) for v in values]
        spans = [[m - min(v) for m, v in zip(means, values, strict=True)],
                 [max(v) - m for m, v in zip(means, values, strict=True)]]
        ax.bar([i + 0.27 * (offset - 1) for i in range(len(rows))], means, width=0.27, label=label,
               yerr=spans, capsize=2)  # the whiskers span the seeds: one run says little (README)
    ax.set_xticks(range(len(rows)), [LABELS[row].replace(", ", ",\n").replace(" + ", "\n+ ") for row in rows],
                  fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("what each part of the training set adds (mean and range over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str]) -> int:
    own, tune_flags = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m selfinstruct.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a generate output made with --rewrites 8 or more")
    parser.add_argument("questions", type=Path, help="hand-written questions (JSONL), never trained on")
    parser.add_argument("--rows", default=",".join(ROWS), help="rows to run, in order")
    parser.add_argument("--seeds", default="0", help="tune seeds, comma-separated")
    parser.add_argument("--out", type=Path, default=Path("outputs/ablation"))
    args = parser.parse_args(own)
    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown or not (args.run / "qa.jsonl").is_file() or not args.questions.is_file():
        print(f"ablation: error: unknown rows {unknown} or missing {args.run / 'qa.jsonl'} / {args.questions}",
              file=sys.stderr)
        return 2
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for row in rows:
            target = args.out / f"{row}-seed{seed}"
            make_row(args.run, target, row)
            results.append(run_row(target, row, seed, args.questions, tune_flags))
            write_json(args.out / "ablation.json", results)
    chart(results, args.out / "ablation.png")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
