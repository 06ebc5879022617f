import json

from selfinstruct.ablation import chart, make_row, table
from selfinstruct.runs import read_jsonl


def source_run(tmp_path):
    run = tmp_path / "source"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"source_tag": "Source:1REF"}))
    pairs = [{"id": "f0-q0", "fact_id": "f0", "answerable": True}, {"id": "f0-q1", "fact_id": "f0", "answerable": True},
             {"id": "f1-q0", "fact_id": "f1", "answerable": True}, {"id": "r0", "fact_id": "r0", "answerable": False},
             {"id": "r1", "fact_id": "r1", "answerable": False}]
    texts = [{"id": "w0000-t", "kind": "window"}] + [{"id": f"w0000-t{k}", "kind": "rewrite"} for k in range(8)]
    for name, records in (("qa.jsonl", pairs), ("texts.jsonl", texts)):
        (run / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_each_row_is_the_subset_it_names(tmp_path):
    run = source_run(tmp_path)
    expected = {"one-phrasing": (["f0-q0", "f1-q0", "r0", "r1"], []),
                "pairs": (["f0-q0", "f0-q1", "f1-q0", "r0", "r1"], []),
                "text": (["f0-q0", "f0-q1", "f1-q0", "r0", "r1"], ["w0000-t"]),
                "rw1": (["f0-q0", "f0-q1", "f1-q0", "r0", "r1"], ["w0000-t", "w0000-t0"]),
                "rw4": (["f0-q0", "f0-q1", "f1-q0", "r0", "r1"], ["w0000-t", "w0000-t0", "w0000-t1", "w0000-t2",
                                                                  "w0000-t3"]),
                "rw8": (["f0-q0", "f0-q1", "f1-q0", "r0", "r1"], ["w0000-t"] + [f"w0000-t{k}" for k in range(8)])}
    for row, (pairs, texts) in expected.items():
        target = tmp_path / row
        make_row(run, target, row)
        assert [p["id"] for p in read_jsonl(target / "qa.jsonl")] == pairs, row
        assert [t["id"] for t in read_jsonl(target / "texts.jsonl")] == texts, row
        assert (target / "manifest.json").read_text() == (run / "manifest.json").read_text()


def test_the_table_has_a_line_per_row_and_seed():
    result = {"row": "rw4", "seed": 1, "steps": 240, "hand_key_accuracy": 0.22, "own_new_phrasings": 0.24,
              "hand_absent_refused": 0.43, "hand_wrong": 0.51}
    lines = table([result, {**result, "row": "pairs", "seed": 0}]).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| + window text + 4 restatements | 1 | 240 | 0.22 |")


def test_a_row_run_with_several_seeds_gets_its_mean_and_range():
    result = {"row": "rw8", "seed": 0, "steps": 465, "hand_key_accuracy": 0.2, "own_new_phrasings": 0.4,
              "hand_absent_refused": 0.6, "hand_wrong": 0.3}
    lines = table([result, {**result, "seed": 1, "hand_key_accuracy": 0.3}, {**result, "row": "pairs"}]).splitlines()
    assert len(lines) == 6
    assert lines[5] == ("| + window text + 8 restatements | mean of 2 | 465 (465-465) | 0.25 (0.20-0.30) "
                        "| 0.40 (0.40-0.40) | 0.60 (0.60-0.60) | 0.30 (0.30-0.30) |")


def test_the_chart_draws_each_rows_mean_and_seed_range(tmp_path):
    result = {"row": "rw8", "seed": 0, "hand_key_accuracy": 0.2, "own_new_phrasings": 0.4, "hand_wrong": 0.3}
    chart([result, {**result, "seed": 1, "hand_key_accuracy": 0.3}, {**result, "row": "pairs"}], tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
