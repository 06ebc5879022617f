"""`make compare RUNS="A B ..."`: the lines `make eval` is read by, for finished runs side by side, the first run
the baseline. A line that moved the wrong way from it is marked WORSE, and the knowledge bars (facts asked about,
new phrasings against verbatim, hand-written questions) are read off each run. `--mean` adds a column for runs
that are seeds of the same code, `--chart PNG` draws the headline rates.

    python -m selfinstruct.compare RUN [RUN ...] [--mean] [--chart compare.png]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from statistics import mean

from .config import UserError
from .report import _cell
from .runs import read_json

# The knowledge issue's bars: facts with an accepted pair, new phrasings (alone and against verbatim), people's
# own questions; the raw tuned model is what they judge.
BARS = {"fact_coverage": 0.8, "new_phrasings": 0.6, "new_vs_verbatim": 0.8, "hand_written": 0.5}
MODELS = ("base", "tuned", "gated")

# (label, probe set, report key, higher is better): one cell per run, base / tuned / gated where it has them.
RATES = [("hand-written answerable: right", "user", "right_rate", True),
         ("hand-written absent: refused", "user", "refusal_rate", True),
         ("hand-written, all: wrong", "user", "wrong_rate", False),
         ("hand-written: known refusals", "user", "known_refusal_rate", False),
         ("own absent: refused", "own", "refusal_rate", True),
         ("own, all: wrong", "own", "wrong_rate", False),
         ("own new phrasings: key accuracy", "own", "paraphrase_key_accuracy", True),
         ("verbatim: key accuracy", "own", "verbatim_key_accuracy", True),
         ("held-out phrasings: key accuracy", "own", "held_out_key_accuracy", True),
         ("... written by the model", "own", "held_out_model_key_accuracy", True)]


def load(run: Path) -> dict:
    """What the three stages recorded: generate's summary, tune's metrics, probe's report."""
    if not (run / "probe" / "report.json").is_file():
        raise UserError(f"{run} has no probe/report.json: run generate, tune and probe on it first")
    return {"name": str(run), "generate": read_json(run / "manifest.json").get("summary", {}),
            "tune": read_json(run / "adapter" / "train_metrics.json"),
            "report": read_json(run / "probe" / "report.json")}


def rates(run: dict, probe_set: str, key: str) -> dict[str, float]:
    summary = run["report"].get("user") if probe_set == "user" else run["report"]
    return {m: summary[m][key] for m in MODELS if summary and summary.get(m) and summary[m].get(key) is not None}


def right_by_type(run: dict) -> str:
    """How many of each kind of hand-written answerable question the raw tuned model got right."""
    user = run["report"].get("user") or {}
    origins = (user.get("tuned") or {}).get("by_origin", {})
    return ", ".join(f"{o} {round(r['right'] * r['n'])}/{r['n']}" for o, r in origins.items()
                     if r["key_accuracy"] is not None) or "–"


def bars(run: dict) -> dict[str, bool | None]:
    """Each knowledge bar met or not (None where the run lacks what it is read from)."""
    coverage = run["generate"].get("fact_coverage")
    new = rates(run, "own", "paraphrase_key_accuracy").get("tuned")
    verbatim = rates(run, "own", "verbatim_key_accuracy").get("tuned")
    hand = rates(run, "user", "right_rate").get("tuned")
    return {"fact_coverage": None if coverage is None else coverage >= BARS["fact_coverage"],
            "new_phrasings": None if new is None else new >= BARS["new_phrasings"],
            "new_vs_verbatim": None if new is None or not verbatim else new >= BARS["new_vs_verbatim"] * verbatim,
            "hand_written": None if hand is None else hand >= BARS["hand_written"]}


# What each stage did, one row each (no direction: more pairs or steps is neither better nor worse).
RUN_ROWS = [("pairs (answerable, facts)", lambda g, t: f"{g.get('pairs', '–')} ({g.get('answerable', '–')}, "
                                                       f"{g.get('facts', '–')})"),
            ("fact sentences with an accepted pair", lambda g, t: f"{g.get('facts_covered', '–')} of "
                                                                  f"{g.get('fact_candidates', '–')}"),
            ("tune steps, gate threshold", lambda g, t: f"{t.get('steps', '–')}, "
                                                        f"{(t.get('gate') or {}).get('threshold', '–')}"),
            ("minutes: generate, tune (without the gate)", lambda g, t: f"{minutes(g.get('wall_seconds'))}, "
                                                                        f"{minutes(t.get('wall_seconds'))}")]


def minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.0f}"


def cell(values: dict[str, float]) -> str:
    return " / ".join(_cell(values.get(m)) for m in MODELS) if values else "–"


def worse(now: dict[str, float], then: dict[str, float], higher_better: bool) -> bool:
    return any(m in then and (now[m] < then[m] if higher_better else now[m] > then[m]) for m in now)


def mean_rates(runs: list[dict], probe_set: str, key: str) -> dict[str, float]:
    per_run = [rates(r, probe_set, key) for r in runs]
    return {m: mean(v[m] for v in per_run) for m in MODELS if all(m in v for v in per_run)}


def table(runs: list[dict], with_mean: bool = False) -> str:
    names = [r["name"] for r in runs] + ([f"mean of {len(runs)}"] if with_mean else [])
    lines = [f"| base / tuned / gated | {' | '.join(names)} |", "|---" * (len(names) + 1) + "|"]
    for label, probe_set, key, higher_better in RATES:
        values = [rates(r, probe_set, key) for r in runs]
        if not any(values):
            continue  # no hand-written questions in any of these runs
        cells = [cell(v) + (" (WORSE)" if i and worse(v, values[0], higher_better) else "")
                 for i, v in enumerate(values)]
        if with_mean:
            cells.append(cell(mean_rates(runs, probe_set, key)))
        lines.append(f"| {label} | {' | '.join(cells)} |")
    blank = [""] if with_mean else []
    rows = [("hand-written right by type (tuned)", [right_by_type(r) for r in runs])]
    rows += [(label, [show(r["generate"], r["tune"]) for r in runs]) for label, show in RUN_ROWS]
    rows.append(("knowledge bars (tuned)", [bars_cell(bars(r)) for r in runs]))
    lines += [f"| {label} | {' | '.join(cells + blank)} |" for label, cells in rows]
    return "\n".join(lines)


def bars_cell(met: dict[str, bool | None]) -> str:
    words = {True: "met", False: "NOT met", None: "–"}
    return ", ".join(f"{name} {words[ok]}" for name, ok in met.items())


def chart(runs: list[dict], path: Path) -> None:
    """The tuned and gated model's headline rates per run, one group of bars a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(label, probe_set, key) for label, probe_set, key, _ in RATES if key != "known_refusal_rate"
             and any(rates(r, probe_set, key) for r in runs)]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / (2 * len(runs))
    for i, run in enumerate(runs):
        for j, model in enumerate(("tuned", "gated")):
            values = [rates(run, probe_set, key).get(model, 0) for _, probe_set, key in shown]
            offset = (2 * i + j) * width - 0.4 + width / 2
            ax.bar([x + offset for x in range(len(shown))], values, width=width, color=f"C{i}",
                   alpha=1 if model == "tuned" else 0.55, label=f"{Path(run['name']).name} {model}")
    ax.set_xticks(range(len(shown)), [label.replace(": ", ":\n") for label, _, _ in shown], fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=max(1, len(runs)))
    ax.set_title("make eval lines per run (solid: tuned, pale: gated)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m selfinstruct.compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="finished run folders; the first is the baseline")
    parser.add_argument("--mean", action="store_true", help="add a column of the runs' mean (seeds of one code)")
    parser.add_argument("--chart", type=Path, help="write the rates as a bar chart (PNG) here")
    args = parser.parse_args(argv)
    try:
        runs = [load(run) for run in args.runs]
    except UserError as e:
        print(f"compare: error: {e}", file=sys.stderr)
        return 2
    print(table(runs, args.mean))
    if args.chart:
        chart(runs, args.chart)
        print(f"compare: chart -> {args.chart}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
