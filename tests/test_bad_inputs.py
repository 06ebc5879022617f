"""One table of bad inputs, each through the CLI: exit 2, one line on stderr naming the problem, no traceback,
and every file that existed before left byte for byte as it was. The model-free rows fail before any engine
loads (the fake engine would be used otherwise, and `engine_loads` says so)."""

from __future__ import annotations

import hashlib
import json

import pytest

from selfinstruct.cli import main

from .conftest import SAMPLE_EN

JAPANESE = "港の灯台は千八百九十年に建てられた。灯台守の名前はまだ誰も知らない。"


def corpus(tmp_path, content: bytes | str | None, name="corpus.txt"):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return str(path)


def generate(tmp_path, model, corpus_path, *extra, out="run"):
    return ["generate", corpus_path, "--model", str(model), "--out", str(tmp_path / out), "--window-tokens", "150",
            "--window-overlap", "20", *extra]


def half_run(tmp_path, model):
    """A folder holding pairs and rejects but no manifest: not a run folder, and not to be emptied."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "qa.jsonl").write_text('{"id": "mine"}\n')
    (run / "rejects.jsonl").write_text('{"reason": "mine"}\n')
    return generate(tmp_path, model, str(SAMPLE_EN))


def foreign_run(tmp_path, model):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"source_tag": "Source:0000REF", "corpus": {"sha256": "0" * 64},
                                                   "model": {"spec": "other", "path": "/other"}, "options": {}}))
    (run / "qa.jsonl").write_text('{"id": "theirs"}\n')
    return generate(tmp_path, model, str(SAMPLE_EN))


def yaml_file(tmp_path, text):
    path = tmp_path / "options.yaml"
    path.write_text(text)
    return str(path)


def probe_run(tmp_path, model, weights=True, questions=None):
    """A run folder with its manifest and an adapter record; the adapter weights are an empty file (never read:
    every row fails before the engine loads)."""
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    text = SAMPLE_EN.read_bytes()
    (run / "manifest.json").write_text(json.dumps({
        "corpus": {"path": str(SAMPLE_EN), "sha256": hashlib.sha256(text).hexdigest(), "language": "en"},
        "model": {"spec": str(model)}, "source_tag": "Source:0001REF"}))
    (run / "qa.jsonl").write_text(json.dumps({"id": "w0000-f0-q0", "question": "Who?", "answer": "Ilka.",
                                              "answerable": True, "window": 0}) + "\n")
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(model)}))
    if weights:
        (run / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    args = ["probe", "--run", str(run)]
    if questions is not None:
        (tmp_path / "mine.jsonl").write_text(questions)
        args += ["--questions", str(tmp_path / "mine.jsonl")]
    return args


def tune_run(tmp_path, model, qa: str, *extra):
    probe_run(tmp_path, model)
    (tmp_path / "run" / "qa.jsonl").write_text(qa)
    return ["tune", "--run", str(tmp_path / "run"), *extra]


ROWS = {
    "missing corpus": (lambda t, m: generate(t, m, corpus(t, None)), "corpus not found"),
    "empty corpus": (lambda t, m: generate(t, m, corpus(t, b"")), "corpus is empty"),
    "whitespace-only corpus": (lambda t, m: generate(t, m, corpus(t, b" \n\t\r\n")), "corpus is empty"),
    "binary corpus": (lambda t, m: generate(t, m, corpus(t, b"\x00\x01\x02\x03" * 200)), "looks binary"),
    "directory as corpus": (lambda t, m: generate(t, m, str(t)), "is a directory"),
    "Latin-1 corpus": (lambda t, m: generate(t, m, corpus(t, "café crème brûlée. ".encode("latin-1") * 9)),
                       "Windows-1252/Latin-1"),
    "Shift_JIS corpus": (lambda t, m: generate(t, m, corpus(t, JAPANESE.encode("shift_jis"))), "Japanese Shift_JIS"),
    "EUC-JP corpus": (lambda t, m: generate(t, m, corpus(t, JAPANESE.encode("euc_jp"))), "Japanese EUC-JP"),
    "UTF-16 without a BOM": (lambda t, m: generate(t, m, corpus(t, "The tide came in. ".encode("utf-16-le") * 9)),
                             "UTF-16 without a byte-order mark"),
    "one-word corpus": (lambda t, m: generate(t, m, corpus(t, "Lighthouse")), "no sentence that states a name"),
    "--out is a file": (lambda t, m: generate(t, m, str(SAMPLE_EN), out=corpus(t, "x", "taken.txt")),
                        "is a file, not a folder"),
    "--out under /proc": (lambda t, m: ["generate", str(SAMPLE_EN), "--model", str(m), "--out", "/proc/x"],
                          "cannot write the run folder /proc/x"),
    "--out holds pairs but no manifest": (half_run, "is not a run folder (no manifest.json)"),
    "--out holds another run": (foreign_run, "holds a run with another corpus"),
    "overlap >= window": (lambda t, m: generate(t, m, str(SAMPLE_EN), "--window-overlap", "150"),
                          "--window-overlap must be below"),
    "negative ratio": (lambda t, m: generate(t, m, str(SAMPLE_EN), "--unanswerable-ratio", "-0.5"),
                       "between 0 and 1"),
    "no Ray workers": (lambda t, m: generate(t, m, str(SAMPLE_EN), "--ray", "--ray-workers", "0"),
                       "--ray-workers must be at least 1"),
    "unknown tune order": (lambda t, m: tune_run(t, m, "", "--order", "docs-first"), "--order must be one of"),
    "unknown model": (lambda t, m: ["generate", str(SAMPLE_EN), "--model", "./no-such-model"], "no such model"),
    "unknown YAML key": (lambda t, m: ["generate", "--config", yaml_file(t, "corpus: c.txt\nwindow_size: 3\n")],
                         "unknown option"),
    "YAML bool that is no bool": (
        lambda t, m: ["generate", "--config", yaml_file(t, "corpus: c.txt\nroundtrip: nope\n")],
        "cannot read 'nope' as bool"),
    "tune: not a run folder": (lambda t, m: ["tune", "--run", str(t)], "is not a run folder"),
    "tune: malformed JSONL, strict": (lambda t, m: tune_run(t, m, "{torn\n", "--strict"),
                                      "qa.jsonl:1: malformed line"),
    "tune: no pair": (lambda t, m: tune_run(t, m, ""), "no usable pairs"),
    "probe: adapter without weights": (lambda t, m: probe_run(t, m, weights=False), "no adapter weights"),
    "probe: malformed questions": (lambda t, m: probe_run(t, m, questions='{"question": "Who?"}\n{oops\n'),
                                   "mine.jsonl:1: malformed line: missing answerable"),
    "probe: questions with a non-bool answerable": (
        lambda t, m: probe_run(t, m, questions='{"question": "Who?", "answerable": "yes"}\n'),
        "answerable true or false"),
}


def snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("row", ROWS, ids=list(ROWS))
def test_bad_input_is_one_line_exit_2_and_loses_nothing(row, tmp_path, tiny_model, fake_engine, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_args, message = ROWS[row]
    args = make_args(tmp_path, tiny_model)
    before = snapshot(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("selfinstruct: error:"), err
    assert message in err[0]
    assert not fake_engine, "the input is refused before any engine loads"
    after = snapshot(tmp_path)
    assert {p: after.get(p) for p in before} == before, "a file that existed before was changed or removed"
