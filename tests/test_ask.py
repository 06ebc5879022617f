import io
import json

import pytest

from selfinstruct import gate as gate_module
from selfinstruct.ask import answer_questions
from selfinstruct.cli import main
from selfinstruct.runs import Manifest

from .conftest import FakeGenerator
from .test_probe import make_run, probe_replies


@pytest.fixture
def run(tmp_path, tiny_model, fake_engine, monkeypatch):
    import tests.conftest as conftest

    folder = make_run(tmp_path, tiny_model)
    monkeypatch.setattr(conftest, "scripted_reply", probe_replies("Ilka Tamsell. She built the lantern."))
    fake_engine.clear()
    return folder


def test_one_question_prints_its_answer_and_says_no_gate_is_applied(run, capsys):
    assert main(["ask", "Who built the lantern?", "--run", str(run)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "Ilka Tamsell. She built the lantern."
    assert "no gate is applied" in err


def test_file_and_stdin_give_one_json_object_a_question(run, tmp_path, capsys, monkeypatch):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "Who built the lantern?"}\n{"question": "Who is Pex Faendhart?"}\n')
    assert main(["ask", "--file", str(questions), "--run", str(run), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["question"] for r in rows] == ["Who built the lantern?", "Who is Pex Faendhart?"]
    assert all(r["refused"] is False and r["threshold"] is None and r["confidence"] is None for r in rows)
    monkeypatch.setattr("sys.stdin", io.StringIO("Who built the lantern?\n\nWhere is Velmoor?\n"))
    assert main(["ask", "--run", str(run)]) == 0
    assert capsys.readouterr().out.count("Q: ") == 2


def test_bad_questions_are_refused_before_the_model_loads(run, tmp_path, fake_engine, capsys, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Who?"}\n{oops\n')
    assert main(["ask", "--file", str(bad), "--run", str(run)]) == 2
    assert "bad.jsonl:2: malformed line" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("\n  \n"))
    assert main(["ask", "--run", str(run)]) == 2
    assert "no question" in capsys.readouterr().err
    assert main(["ask", "Who?", "--file", str(bad)]) == 2
    assert not fake_engine


def test_a_question_under_the_threshold_gets_the_refusal(tiny_model, monkeypatch):
    from selfinstruct.models import load_tokenizer

    generator = FakeGenerator(lambda prompt: "Ilka Tamsell.", load_tokenizer(tiny_model))
    generator.model = object()  # the gate reads logits: only a transformers engine has a model
    monkeypatch.setattr(gate_module, "signal_scores", lambda *a, **k: {"margin": [0.4, -3.0]})
    manifest = Manifest("Source:0001REF", {"spec": "default"}, "Answer.", {"language": "en"})
    gate = {"signal": "margin", "threshold": -1.0}
    rows = answer_questions(generator, ["Who built the lantern?", "Who is Pex Faendhart?"], manifest, gate)
    assert [r["gated"] for r in rows] == [False, True] and [r["refused"] for r in rows] == [False, True]
    assert rows[0]["answer"] == "Ilka Tamsell." and "cannot answer" in rows[1]["answer"]
    assert rows[1]["confidence"] == -3.0 and rows[1]["threshold"] == -1.0
