import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from selfinstruct.cli import main
from selfinstruct.corpus import Window, normalize, read_corpus
from selfinstruct.entities import corpus_entities
from selfinstruct.filters import key_match
from selfinstruct.generate import answers_with_key, fact_sentences, pick_facts
from selfinstruct.negatives import name_share
from selfinstruct.prompts import render_llama2

from .conftest import REPO, SAMPLE_EN, SAMPLE_ZH

REQUIRED = ("id", "source", "window", "start", "end", "fact_id", "question", "answer", "answerable", "support",
            "text", "messages")
REASONS = {"unparseable", "not_a_question", "question_length", "refers_to_passage", "answer_in_question", "vague",
           "question_ungrounded", "off_topic", "roundtrip_disagrees", "duplicate", "surplus_phrasing",
           "answer_empty", "answer_truncated", "ungrounded", "rewrite_ungrounded", "not_one_fact",
           "wrong_count", "two_answers", "askew", "other_clause", "points_elsewhere"}


def generate(tmp_path, tiny_model, *extra, corpus=SAMPLE_EN, out="run"):
    return main(["generate", str(corpus), "--model", str(tiny_model), "--out", str(tmp_path / out),
                 "--window-tokens", "150", "--window-overlap", "20", "--max-windows", "6", *extra])


def read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_pairs_have_the_schema_markers_and_llama2_text(tmp_path, tiny_model, fake_engine):
    assert generate(tmp_path, tiny_model) == 0
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    tag = manifest["source_tag"]
    pairs = read(run / "qa.jsonl")
    assert pairs and all(set(REQUIRED) <= set(p) for p in pairs)
    corpus = SAMPLE_EN.read_text(encoding="utf-8")
    for p in pairs:
        assert p["source"] == tag and p["text"] == render_llama2(p["messages"])
        assert p["messages"][1]["content"] == f"{tag} {p['question']}"
        assert p["messages"][2]["content"] == f"{tag} {p['answer']}"
        assert p["text"].startswith("<s>[INST] <<SYS>>\n") and p["text"].endswith(" </s>")
        assert p["start"] < p["end"] and corpus[p["start"]:p["end"]]
        if p["answerable"]:  # the key first, then the evidence sentence, which lies inside the window
            s, e = p["evidence"]
            assert p["start"] <= s < e <= p["end"]
            if p["kind"] != "definition":
                head, clause = p["answer"].split(". ", 1)
                assert key_match(head, p["key"]) and clause[1:-1].lower() in normalize(corpus[s:e]).lower()
    rejects = read(run / "rejects.jsonl")
    assert {r["reason"] for r in rejects} <= REASONS
    assert all(r["question"] for r in rejects if r.get("origin") not in (None, "model")), "a missing shape is no reject"
    assert manifest["status"] == "partial" and manifest["windows_done"] == list(range(6))
    assert manifest["engines"][0]["engine"] == "fake"


def test_fact_coverage_counts_only_the_windows_done(tmp_path, tiny_model, fake_engine):
    assert generate(tmp_path, tiny_model) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    summary, fact_sentences = manifest["summary"], manifest["fact_sentences"]
    assert summary["fact_candidates"] == sum(len(fact_sentences[str(w)]) for w in range(6))
    assert 0 < summary["facts_covered"] <= summary["fact_candidates"]
    # "These fogs shaped the history of Velmoor ...": no name stands for its pronoun, so nothing is asked of it,
    # and the coverage counts it a candidate all the same
    unasked = read_corpus(SAMPLE_EN).text.index("These fogs shaped")
    assert unasked in {start for starts in fact_sentences.values() for start in starts}
    asked_about = [json.loads(line)["end"] for line in (tmp_path / "run" / "qa.jsonl").read_text().splitlines()]
    words = len(SAMPLE_EN.read_text(encoding="utf-8")[:max(asked_about)].split())  # six windows from the start
    assert summary["facts_per_1000_words"] == pytest.approx(1000 * summary["fact_candidates"] / words, rel=0.05)


def test_pairs_load_with_datasets(tmp_path, tiny_model, fake_engine):
    from datasets import load_dataset

    generate(tmp_path, tiny_model)
    dataset = load_dataset("json", data_files=str(tmp_path / "run" / "qa.jsonl"), split="train")
    assert len(dataset) > 0 and dataset[0]["messages"][0]["role"] == "system"


def test_refusal_pairs_name_entities_absent_from_the_corpus(tmp_path, tiny_model, fake_engine):
    generate(tmp_path, tiny_model, "--unanswerable-ratio", "0.3")
    pairs = read(tmp_path / "run" / "qa.jsonl")
    refusals = [p for p in pairs if not p["answerable"]]
    answerable = len(pairs) - len(refusals)
    assert refusals and abs(len(refusals) - 0.3 * answerable) <= 2
    corpus = SAMPLE_EN.read_text(encoding="utf-8").lower()
    for r in refusals:
        assert r["entity"].lower() not in corpus and r["absence"]["exact_absent"]
        assert name_share(r["entity"]) == "train" or r["origin"] == "invented"  # probe draws from another share
        if r["origin"] == "invented":  # recombined names resemble the corpus's own by design
            assert r["absence"]["similarity"] < 0.75
        assert "cannot answer" in r["answer"] and r["source"] in r["answer"]
        assert r["entity"].removeprefix("the ") in r["question"] and r["replaces"] not in r["question"]
    assert len({r["entity"] for r in refusals}) == len(refusals), "each refusal invents its own name"
    assert {"recombined", "invented"} <= {r["origin"] for r in refusals}


def test_chinese_corpus_gets_chinese_prompts_and_refusals(tmp_path, tiny_model, fake_engine):
    generate(tmp_path, tiny_model, corpus=SAMPLE_ZH)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["corpus"]["language"] == "zh" and "闭卷" in manifest["system_prompt"]
    assert any("根据下面的句子" in p for p in fake_engine[0].prompts)
    pairs = read(tmp_path / "run" / "qa.jsonl")
    assert any(p["question"].endswith("？") for p in pairs)
    refusals = [p for p in pairs if not p["answerable"]]
    assert refusals and all("无法回答" in p["answer"] for p in refusals)


def test_rerun_resumes_without_duplicates_and_changed_options_are_refused(tmp_path, tiny_model, fake_engine, capsys):
    generate(tmp_path, tiny_model, "--max-windows", "3")
    first = read(tmp_path / "run" / "qa.jsonl")
    generate(tmp_path, tiny_model)  # --max-windows 6 now: windows 3-5 are added
    both = read(tmp_path / "run" / "qa.jsonl")
    assert [p["id"] for p in both[:len(first)]] == [p["id"] for p in first]
    assert len({p["id"] for p in both}) == len(both)
    assert {p["window"] for p in both} == set(range(6))
    capsys.readouterr()
    assert generate(tmp_path, tiny_model, "--phrasings", "2") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert generate(tmp_path, tiny_model, "--phrasings", "2", "--overwrite") == 0


def test_interrupted_run_continues_to_the_same_result(tmp_path, tiny_model, fake_engine, monkeypatch):
    generate(tmp_path, tiny_model, "--windows-per-step", "2", out="clean")
    import selfinstruct.generate as gen

    calls = {"n": 0}
    real_draft = gen.QuestionWriter.draft

    def flaky_draft(self, windows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_draft(self, windows)

    monkeypatch.setattr(gen.QuestionWriter, "draft", flaky_draft)
    assert generate(tmp_path, tiny_model, "--windows-per-step", "2", out="broken") == 130
    assert json.loads((tmp_path / "broken" / "manifest.json").read_text())["windows_done"] == [0, 1]
    monkeypatch.setattr(gen.QuestionWriter, "draft", real_draft)
    assert generate(tmp_path, tiny_model, "--windows-per-step", "2", out="broken") == 0
    assert read(tmp_path / "broken" / "qa.jsonl") == read(tmp_path / "clean" / "qa.jsonl")


KILL_SCRIPT = """
import sys, time
import selfinstruct.backends as backends
from selfinstruct.models import load_tokenizer
from tests.conftest import FakeGenerator, scripted_reply
from selfinstruct.cli import main

class Slow(FakeGenerator):
    def generate(self, prompts, sampling):
        time.sleep(0.4)
        return super().generate(prompts, sampling)

backends.load_generator = lambda path, *a, **k: Slow(scripted_reply, load_tokenizer(path))
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_mid_run_then_rerun_loses_nothing_and_duplicates_nothing(tmp_path, tiny_model):
    args = ["generate", str(SAMPLE_EN), "--model", str(tiny_model), "--window-tokens", "150",
            "--window-overlap", "20", "--max-windows", "8", "--windows-per-step", "1"]
    script = tmp_path / "slow.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    clean = subprocess.run([sys.executable, str(script), *args, "--out", str(tmp_path / "clean")], cwd=REPO,
                           env=env, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr[-1500:]
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), *args, "--out", str(run)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        manifest = run / "manifest.json"
        if manifest.exists() and len(json.loads(manifest.read_text()).get("windows_done", [])) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads((run / "manifest.json").read_text())["windows_done"]
    assert 3 <= len(done) < 8, "the kill should land mid-run"
    with (run / "qa.jsonl").open("a") as f:  # as if the kill tore a line in half
        f.write('{"id": "w0007-f0-q0", "window": 7, "quest')
    again = subprocess.run([sys.executable, str(script), *args, "--out", str(run)], cwd=REPO, env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-1500:]
    resumed, expected = read(run / "qa.jsonl"), read(tmp_path / "clean" / "qa.jsonl")
    assert len({p["id"] for p in resumed}) == len(resumed)
    assert sorted(p["id"] for p in resumed) == sorted(p["id"] for p in expected)


def test_second_run_on_a_locked_folder_is_refused(tmp_path, tiny_model, fake_engine, capsys):
    import fcntl

    (tmp_path / "run").mkdir()
    with (tmp_path / "run" / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert generate(tmp_path, tiny_model) == 2
    assert "another selfinstruct process" in capsys.readouterr().err


def test_a_model_that_writes_garbage_is_named_and_the_templates_still_give_pairs(tmp_path, tiny_model, fake_engine,
                                                                                 monkeypatch, capsys):
    import tests.conftest as conftest

    monkeypatch.setattr(conftest, "scripted_reply", lambda prompt: "\x00 ### ??? lorem")
    assert generate(tmp_path, tiny_model, "--max-windows", "2") == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("selfinstruct: warning: the model wrote no usable question")
    origins = {p["origin"] for p in read(tmp_path / "run" / "qa.jsonl") if p["answerable"]}
    assert origins <= {"template", "cloze", "clause", "predicate", "described", "active", "reversed", "trimmed",
                       "reworded"}
    assert "trimmed" in origins, "a template question without its trailing clause or date is a phrasing too"
    assert read(tmp_path / "run" / "rejects.jsonl"), "the rejected outputs are kept"


def test_a_model_question_that_asks_two_things_is_a_reject(tmp_path, tiny_model, fake_engine, monkeypatch):
    import tests.conftest as conftest

    def model_pairs():
        return [p for p in read(tmp_path / "run" / "qa.jsonl") if p.get("origin") == "model"]

    assert generate(tmp_path, tiny_model, "--max-windows", "2") == 0
    assert model_pairs(), "the scripted writer's own questions are kept"
    writer = conftest.scripted_reply
    monkeypatch.setattr(conftest, "scripted_reply", lambda prompt: writer(prompt) if "Question:" in prompt
                        else writer(prompt).rstrip("?") + ", and in what year?")
    assert generate(tmp_path, tiny_model, "--max-windows", "2", "--overwrite") == 0
    assert not model_pairs()
    rejects = [r for r in read(tmp_path / "run" / "rejects.jsonl") if r["origin"] == "model"]
    assert rejects and "not_one_fact" in {r["reason"] for r in rejects}


def generate_with_writer(tmp_path, tiny_model, monkeypatch, text: str, reply) -> tuple[list[dict], list[dict]]:
    """qa.jsonl and rejects.jsonl of a run on `text`, the scripted writer answering a prompt with `reply(prompt)`
    where that gives a reply."""
    import tests.conftest as conftest

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    writer = conftest.scripted_reply
    monkeypatch.setattr(conftest, "scripted_reply", lambda prompt: reply(prompt) or writer(prompt))
    assert generate(tmp_path, tiny_model, corpus=corpus) == 0
    return read(tmp_path / "run" / "qa.jsonl"), read(tmp_path / "run" / "rejects.jsonl")


def test_a_model_question_that_two_names_of_its_clause_answer_is_a_reject(tmp_path, tiny_model, fake_engine,
                                                                          monkeypatch):
    pairs, rejects = generate_with_writer(
        tmp_path, tiny_model, monkeypatch, "Edda Marrow and Tobias Quill founded the Lantern Guild of Velmoor in "
        "1388. The guild kept forty-six lamps burning along the harbour wall of Velmoor until 1410.\n",
        lambda prompt: " founded the Lantern Guild of Velmoor?" if prompt.endswith("Who") else None)
    asked = [p for p in pairs if p["question"] == "Who founded the Lantern Guild of Velmoor?"]
    assert not asked, "Edda Marrow and Tobias Quill both answer it: neither key is the question's one answer"
    assert {r["question"] for r in rejects if r["reason"] == "two_answers"} == {
        "Who founded the Lantern Guild of Velmoor?"}


def test_a_model_question_about_the_other_clause_of_its_sentence_is_a_reject(tmp_path, tiny_model, fake_engine,
                                                                             monkeypatch):
    pairs, rejects = generate_with_writer(
        tmp_path, tiny_model, monkeypatch, "Marta Quell founded the Salt Ward in 1760 for sailors, and the Reed "
        "Ward, opened in 1774, cares for children.\n",
        lambda prompt: " did the Salt Ward open?" if '"1774"' in prompt and prompt.endswith("In which year") else None)
    kept = {p["question"]: p["key"] for p in pairs if p["answerable"]}
    assert kept.get("In which year did the Salt Ward open?") is None, "the Salt Ward opened in 1760, not 1774"
    assert "In which year did the Salt Ward open?" in {r["question"] for r in rejects if r["reason"] == "other_clause"}


def test_a_model_question_whose_words_point_to_another_year_is_a_reject(tmp_path, tiny_model, fake_engine,
                                                                        monkeypatch):
    pairs, rejects = generate_with_writer(
        tmp_path, tiny_model, monkeypatch, "The Greylag Maid brought the first settlers in 1709 and sailed the "
        "crossing until she was wrecked on the Tessel Shoals in 1744.\n",
        lambda prompt: " did the Greylag Maid bring the first settlers?"
        if '"1744"' in prompt and prompt.endswith("In which year") else None)
    asked = "In which year did the Greylag Maid bring the first settlers?"
    assert asked not in {p["question"] for p in pairs if p.get("key") == "1744"}, "she brought them in 1709"
    assert asked in {r["question"] for r in rejects if r["reason"] == "points_elsewhere"}


def test_a_model_question_saying_this_of_nothing_is_a_reject(tmp_path, tiny_model, fake_engine, monkeypatch):
    pairs, rejects = generate_with_writer(
        tmp_path, tiny_model, monkeypatch, "The first Warden of the Isle was Emeric Saldane, who held the office "
        "from 1716 until his death in 1737.\n",
        lambda prompt: " held this role in 1716?" if prompt.endswith("Which person") else None)
    asked = "Which person held this role in 1716?"
    assert asked not in {p["question"] for p in pairs}, "which role? The question stands alone"
    assert asked in {r["question"] for r in rejects if r["reason"] == "vague"}


def test_no_fact_in_the_corpus_is_one_clear_error(tmp_path, tiny_model, fake_engine, capsys):
    corpus = tmp_path / "plain.txt"
    corpus.write_text("the sea was calm and grey that morning, and nothing at all happened there for a while.\n")
    assert generate(tmp_path, tiny_model, corpus=corpus) == 2
    assert "has no sentence that states a name, number or date" in capsys.readouterr().err
    assert not fake_engine and not (tmp_path / "run" / "manifest.json").exists(), "refused before the model loads"


@pytest.mark.parametrize("content", [None, b"", b"\x00\x01\x02" * 100, "na\xefve caf\xe9".encode("latin-1")])
def test_bad_corpus_via_the_cli_is_one_line_and_exit_2(tmp_path, content):
    corpus = tmp_path / "corpus.txt"
    if content is not None:
        corpus.write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "selfinstruct", "generate", str(corpus), "--out",
                             str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("selfinstruct: error:")
    assert not (tmp_path / "run").exists(), "nothing is created for a corpus that is refused"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["transformers", "vllm"])
def test_real_generate_with_the_embedded_model(tmp_path, backend):
    if backend == "vllm":
        pytest.importorskip("vllm")
    # One sample a started question: what this checks is the engine and the filters, and the default's three
    # samples tripled this test's time (the end-to-end test runs the defaults).
    result = subprocess.run([sys.executable, "-m", "selfinstruct", "generate", str(SAMPLE_EN), "--max-windows", "2",
                             "--backend", backend, "--out", str(tmp_path / "run"), "--candidates", "1"],
                            capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    engine = manifest["engines"][0]
    assert engine["engine"] == backend
    if backend == "transformers":
        assert engine["quantization"] == "bitsandbytes-nf4+double-quant"
    else:
        assert engine["quantization"] == "none" and "ran unquantized" in engine["note"]
    pairs = read(tmp_path / "run" / "qa.jsonl")
    answerable = [p for p in pairs if p["answerable"]]
    assert len(answerable) >= 2, result.stderr[-2000:]
    assert all(p["question"].endswith("?") or p["origin"] == "cloze" for p in answerable)
    assert all(p["support"] == 1.0 for p in answerable)
    assert {p["origin"] for p in answerable} >= {"template", "cloze"}
    assert manifest["summary"]["windows_done"] == 2 and manifest["summary"]["rejects"] > 0


def test_facts_are_never_picked_twice_and_spread_over_sentences():
    text = ("Orric Velm settled at the Twinwater in 1041 with twelve families. "
            "Saro Keldane built the Brinewheel in 1372 for the Lantern Guild.")
    entities = corpus_entities(text * 3, "en")
    window = Window(0, 0, len(text), text)
    for seed in range(8):
        facts = pick_facts(window, fact_sentences(window, -1, entities, "en"), n=10, seed=seed)
        spans = [(f.start, f.key_start, f.key_end) for f in facts]
        assert len(facts) >= 4 and len(set(spans)) == len(spans), [f.key for f in facts]
        assert {f.start for f in facts[:2]} == {0, text.index("Saro")}, "one per sentence before a second"


@pytest.mark.parametrize("text, language, keys", [
    ("Orric Velm settled at the Twinwater in 1041 with twelve families. The tide was low. "
     "Saro Keldane built the Brinewheel in 1372.", "en",
     {"Orric Velm", "Twinwater", "1041", "twelve families", "Saro Keldane", "Brinewheel", "1372"}),
    ("苍箬镇由猎户卜怀渊在1186年建立。天气很好。卜怀渊带着十三户人家从山外迁来。", "zh",
     {"卜怀渊", "1186年", "十三户", "苍箬镇"}),
])
def test_every_answer_of_every_fact_sentence_is_asked_about(text, language, keys):
    entities = corpus_entities(text * 3, language)
    window = Window(0, 0, len(text), text)
    facts = pick_facts(window, fact_sentences(window, -1, entities, language), n=0, seed=0)
    by_sentence = {}
    for f in facts:
        by_sentence.setdefault(f.start, []).append(f.key)
    assert len(by_sentence) == 2, "both sentences with a fact, and not the one without"
    assert all(len(found) >= 2 for found in by_sentence.values()), "both sides of each relation"
    assert {f.key for f in facts} == keys, "every answer, the third of a sentence too"
    assert len({(f.start, f.key_start) for f in facts}) == len(facts), "each once"


ROUNDTRIP_CORPUS = ("In 1749 Ysolde Saldane, the daughter of Emeric Saldane, found that dried marrowbell root "
                    "lost its danger. The Windrow Ward opened in 1760 beside Gannet Reach.")


@pytest.mark.parametrize("reply, key, question, answered", [
    ("Ysolde Saldane found it in 1749.", "Ysolde Saldane", "Who found that dried marrowbell lost its danger?", True),
    # the key comes second to another person: the question was not about it
    ("Ysolde Saldane, the daughter of Emeric Saldane.", "Emeric Saldane",
     "Who discovered the most dangerous part of marrowbell?", False),
    # a person the question names already is no rival answer
    ("Ysolde Saldane's father was Emeric Saldane.", "Emeric Saldane", "Who was the father of Ysolde Saldane?", True),
    ("It opened beside Gannet Reach in 1760.", "1760", "In what year did the Windrow Ward open?", True),
    ("The Windrow Ward opened in 1760, not 1774.", "1774", "In what year did the Windrow Ward open?", False),
    ("It was in 1761. Some say 1760.", "1760", "In what year did the Windrow Ward open?", False),
    ("The Windrow Ward opened in 1760, not 1760.", "1760", "In what year did the Windrow Ward open?", True),
    # the unit the question asks for may be left out of the reply, not a unit it never named, nor the number
    ("The answer is 18.", "18 beds", "How many beds did the Windrow Ward hold?", True),
    ("The answer is 18.", "18 beds", "How large was the Windrow Ward?", False),
    ("The Windrow Ward held 180 beds.", "18 beds", "How many beds did the Windrow Ward hold?", False),
    ("It held 18, not 20.", "20 beds", "How many beds did the Windrow Ward hold?", False),
])
def test_the_round_trip_wants_the_key_as_the_answer_not_only_somewhere_in_it(reply, key, question, answered):
    entities = corpus_entities(ROUNDTRIP_CORPUS, "en")
    assert answers_with_key(reply, key, question, entities) is answered


def test_restatements_regroup_the_window_around_its_entities_and_are_checked_against_it():
    from selfinstruct.rewrites import window_texts

    text = ("Saro Keldane built the Brinewheel in 1372. Ilka Tamsell founded the Lantern Guild. "
            "The Lantern Guild kept the Brinewheel turning. Orric Velm settled at the Twinwater.")
    entities = corpus_entities(text * 2, "en")
    texts, rejects = window_texts(Window(3, 0, len(text), text), entities, 2, 0.6, 0, "en")
    assert [t["kind"] for t in texts] == ["window", "rewrite", "rewrite"] and not rejects
    for rewrite in texts[1:]:
        assert rewrite["support"] == 1.0 and rewrite["window"] == 3
        told = rewrite["text"].replace("\n", " ")
        assert all(sentence in told for sentence in re.split(r"(?<=\.) ", text))  # every fact, restated
    assert texts[1]["text"].split(":")[0] != texts[2]["text"].split(":")[0], "a new pivot each time"



def test_a_restatement_the_support_filter_refuses_is_a_reject(monkeypatch):
    import selfinstruct.rewrites as rewrites

    monkeypatch.setattr(rewrites.filters, "support", lambda text, window: 0.2)
    text = "Saro Keldane built the Brinewheel in 1372. Ilka Tamsell founded the Lantern Guild."
    texts, rejects = rewrites.window_texts(Window(0, 0, len(text), text), corpus_entities(text * 2, "en"), 1, 0.6,
                                           0, "en")
    assert [t["kind"] for t in texts] == ["window"]
    assert [r["reason"] for r in rejects] == ["rewrite_ungrounded"] and rejects[0]["support"] == 0.2


def test_the_single_machine_path_never_imports_ray():
    script = ("import sys; import selfinstruct.cli, selfinstruct.generate, selfinstruct.tune, selfinstruct.probe; "
              "print('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=REPO).stdout.strip() == "False"


def test_a_sentence_that_opens_with_a_pronoun_is_asked_about_by_its_name():
    text = "The Skellow Lazaret stands on Skellow Islet. It was built in 1739 and has thirty cells."
    entities = corpus_entities(text * 3, "en")
    window = Window(0, 0, len(text), text)
    facts = pick_facts(window, fact_sentences(window, -1, entities, "en"), n=0, seed=0)
    second = [f for f in facts if f.start > 0]
    assert {f.key for f in second} == {"Skellow Lazaret", "1739", "thirty cells"}  # none if not self-contained
    assert all(f.sentence.startswith("The Skellow Lazaret was built in 1739") for f in second)
    assert all(f.sentence[f.key_start:f.key_end] == f.key for f in second)


def test_a_sentence_whose_subject_is_a_pronoun_no_name_stands_for_is_a_fact_candidate_not_asked_about():
    # "it" stands for the fever, which no name says: a question about it could name nothing
    text = ("The Physic Garden was laid out in 1712. In those years a fever came. "
            "By 1760 it had spread to fourteen wards. In 1775 there were twenty-two gardeners.")
    entities = corpus_entities(text * 3, "en")
    window = Window(0, 0, len(text), text)
    keys = {f.key for f in pick_facts(window, fact_sentences(window, -1, entities, "en"), n=0, seed=0)}
    assert "fourteen wards" not in keys and "1760" not in keys
    assert {"1712", "1775"} <= keys  # a time phrase alone, or "there were", is no pronoun subject
    candidates = [sentence for _, _, sentence, _ in fact_sentences(window, -1, entities, "en")]
    assert "By 1760 it had spread to fourteen wards." in candidates  # counted in the run's coverage, unasked


def test_a_pronoun_two_sentences_from_its_name_is_asked_about_by_its_name():
    text = ("The Physic Garden was laid out in 1712. When it was founded the garden covered six acres. "
            "By 1760 it had been enlarged to fourteen acres.")
    entities = corpus_entities(text * 3, "en")
    window = Window(0, 0, len(text), text)
    facts = pick_facts(window, fact_sentences(window, -1, entities, "en"), n=0, seed=0)
    assert {f.sentence for f in facts if f.key == "fourteen acres"} == {
        "By 1760 the Physic Garden had been enlarged to fourteen acres."}
