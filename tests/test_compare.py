"""`make compare`: runs side by side, the first the baseline, WORSE marked, the knowledge bars read off each."""

import json

from selfinstruct.compare import main
from selfinstruct.report import metrics

RIGHT = {"verdict": "answered", "outcome": "right", "key_match": True, "answer": "Maud Orrow."}
WRONG = {"verdict": "answered", "outcome": "wrong", "key_match": False, "answer": "Tobias Varrance."}
REFUSED = {"verdict": "refused", "outcome": "refused", "answer": "I don't know."}
INVENTED = {"verdict": "hallucinated", "outcome": "wrong", "answer": "It was built in 1802."}


def probes(new_right: int, hand_right: int) -> list[dict]:
    """10 new phrasings, 10 verbatim (all right), 10 own absent (half refused); 10 hand-written answerable
    (wh and cloze) and 4 hand-written absent (refused). The gated model is the tuned one."""
    def probe(kind, origin, answerable, result):
        return {"kind": kind, "origin": origin, "answerable": answerable, "question": "Q?", "entity": "X",
                "results": {"base": REFUSED if not answerable else WRONG, "tuned": result, "gated": result}}
    return ([probe("answerable", "paraphrase", True, RIGHT if i < new_right else WRONG) for i in range(10)]
            + [probe("answerable", "verbatim", True, RIGHT) for _ in range(10)]
            + [probe("absent", "swapped", False, REFUSED if i % 2 else INVENTED) for i in range(10)]
            + [probe("user", "wh" if i % 2 else "cloze", True, RIGHT if i < hand_right else WRONG) for i in range(10)]
            + [probe("user", "recombined", False, REFUSED) for _ in range(4)])


def make_run(root, name, new_right, hand_right, covered=9):
    run = root / name
    (run / "probe").mkdir(parents=True)
    (run / "adapter").mkdir()
    ps = probes(new_right, hand_right)
    report = {m: metrics(ps, m) for m in ("base", "tuned", "gated")}
    report["user"] = {m: metrics(ps, m, kinds=("user",)) for m in ("base", "tuned", "gated")}
    (run / "probe" / "report.json").write_text(json.dumps(report))
    summary = {"pairs": 40, "answerable": 30, "facts": 12, "fact_candidates": 10, "facts_covered": covered,
               "fact_coverage": covered / 10, "wall_seconds": 600}
    (run / "manifest.json").write_text(json.dumps({"summary": summary}))
    (run / "adapter" / "train_metrics.json").write_text(json.dumps({"steps": 50, "wall_seconds": 1800,
                                                                    "gate": {"threshold": 0.18}}))
    return run


def test_compare_marks_what_got_worse_and_reads_the_knowledge_bars(tmp_path, capsys):
    before = make_run(tmp_path, "before", new_right=9, hand_right=6)
    after = make_run(tmp_path, "after", new_right=7, hand_right=4, covered=7)
    assert main([str(before), str(after), "--mean", "--chart", str(tmp_path / "compare.png")]) == 0
    lines = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()}
    assert lines["own new phrasings: key accuracy"].endswith(
        "| 0.00 / 0.90 / 0.90 | 0.00 / 0.70 / 0.70 (WORSE) | 0.00 / 0.80 / 0.80 |")
    assert "0.00 / 0.60 / 0.60 | 0.00 / 0.40 / 0.40 (WORSE)" in lines["hand-written answerable: right"]
    assert "WORSE" not in lines["verbatim: key accuracy"] and "WORSE" not in lines["own absent: refused"]
    assert "cloze 3/5, wh 3/5" in lines["hand-written right by type (tuned)"]
    assert lines["fact sentences with an accepted pair"].endswith("| 9 of 10 | 7 of 10 |  |")
    assert "| 50, 0.18 |" in lines["tune steps, gate threshold"]
    assert "| 10, 30 |" in lines["minutes: generate, tune (without the gate)"]
    bars = lines["knowledge bars (tuned)"].split(" | ")
    assert bars[1] == "fact_coverage met, new_phrasings met, new_vs_verbatim met, hand_written met"
    # 7 of 10 new phrasings is over 0.6 but under 0.8 x verbatim; 4 of 10 hand-written is under 0.5
    assert bars[2] == "fact_coverage NOT met, new_phrasings met, new_vs_verbatim NOT met, hand_written NOT met"
    assert (tmp_path / "compare.png").stat().st_size > 10_000


def test_compare_names_a_run_without_a_probe_report_in_one_line(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    assert main([str(tmp_path / "half")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "half has no probe/report.json" in err
