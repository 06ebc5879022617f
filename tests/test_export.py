import json

import pytest
import yaml

from selfinstruct.cli import main

from .conftest import SAMPLE_EN


@pytest.fixture
def run(tmp_path, tiny_model, fake_engine):
    run = tmp_path / "run"
    assert main(["generate", str(SAMPLE_EN), "--model", str(tiny_model), "--out", str(run), "--max-windows", "3",
                 "--window-tokens", "150"]) == 0
    return run


def pairs_of(run):
    return [json.loads(line) for line in (run / "qa.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("fmt, loader", [("jsonl", "json"), ("parquet", "parquet"), ("sharegpt", "json"),
                                         ("alpaca", "json")])
def test_each_format_loads_with_datasets_in_the_layout_its_trainers_read(run, fmt, loader):
    from datasets import load_dataset

    assert main(["export", "--run", str(run), "--format", fmt]) == 0
    path = run / "export" / f"{fmt}.{'parquet' if fmt == 'parquet' else 'jsonl'}"
    data = load_dataset(loader, data_files=str(path), split="train")
    pairs = pairs_of(run)
    assert len(data) == len(pairs) and data["id"] == [p["id"] for p in pairs]
    first, (system, question, answer) = data[0], (m["content"] for m in pairs[0]["messages"])
    if fmt in ("jsonl", "parquet"):
        assert first["messages"] == pairs[0]["messages"] and "answerable" in data.column_names
    elif fmt == "sharegpt":
        assert [t["from"] for t in first["conversations"]] == ["system", "human", "gpt"]
        assert [t["value"] for t in first["conversations"]] == [system, question, answer]
    else:
        assert [first[k] for k in ("instruction", "input", "output", "system")] == [question, "", answer, system]


def test_the_dataset_card_has_a_hub_header_and_says_what_was_kept(run):
    assert main(["export", "--run", str(run), "--out", str(run / "pairs.jsonl")]) == 0
    assert (run / "pairs.jsonl").is_file()
    card = (run / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["license"] == "unknown" and header["language"] == ["en"]
    assert header["size_categories"] == ["n<1K"] and "question-answering" in header["task_categories"]
    pairs = pairs_of(run)
    refusals = sum(not p["answerable"] for p in pairs)
    assert f"{len(pairs)} question-answer pairs" in card and f"{refusals} refusals" in card
    assert "| reason | rejected |" in card and "not reviewed by a person" in card


def test_a_pair_without_its_three_messages_is_one_clear_error(run, capsys):
    lines = (run / "qa.jsonl").read_text().splitlines()
    broken = json.loads(lines[0])
    broken["messages"] = broken["messages"][:2]
    (run / "qa.jsonl").write_text("\n".join([json.dumps(broken)] + lines[1:]) + "\n")
    assert main(["export", "--run", str(run), "--format", "alpaca"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no system/user/assistant messages" in err[0]
    assert not (run / "export").exists()
