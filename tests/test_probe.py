import json
import random

import pytest

from selfinstruct.cli import main
from selfinstruct.entities import corpus_entities
from selfinstruct.filters import asks_one_fact
from selfinstruct.negatives import name_share
from selfinstruct.probe import Probe, absent_probes, held_out_probes, is_refusal, judge, paraphrase_probes
from selfinstruct.report import interval_line, metrics, wilson, write

from .conftest import SAMPLE_EN, SAMPLE_ZH, FakeGenerator


@pytest.fixture(scope="module")
def english():
    text = SAMPLE_EN.read_text(encoding="utf-8")
    return text, corpus_entities(text, "en")


def pair(i, question, answerable=True, entity=None):
    return {"id": f"p{i}", "question": question, "answer": "The Brinewheel was built by Saro Keldane.",
            "answerable": answerable, "window": i, "entity": entity, "key": "Saro Keldane"}


def test_absent_probes_are_absent_and_apart_from_training_refusal_names(english):
    text, entities = english
    pairs = [pair(i, q) for i, q in enumerate(["Who built the Brinewheel?", "Where does the River Calvane flow?",
                                               "Who founded the Lantern Guild?", "When did Orric Velm arrive?"])]
    # The names the same seed draws when nothing is avoided stand in for training refusal names, so avoiding
    # them is really tested.
    first = absent_probes(pairs, text, "en", entities, 20, random.Random(3), set())
    training_names = {p.entity for p in first[::2] if p.origin != "false_premise"}
    probes = absent_probes(pairs, text, "en", entities, 20, random.Random(3), training_names)
    assert len(probes) == 20
    # Every source shows up; whether the four hard names are recombined or real-world is the shuffle's draw.
    origins = {p.origin for p in probes}
    assert {"swapped", "invented", "false_premise"} < origins <= {"swapped", "invented", "recombined", "real_world",
                                                                "false_premise"}
    assert origins & {"recombined", "real_world"}
    for p in probes:
        assert p.entity.removeprefix("the ") in p.question and not p.answerable
        assert p.entity not in training_names
        if p.origin == "false_premise":  # a corpus entity, in a relation no sentence of the corpus states
            assert p.entity in entities
            continue
        assert p.entity.lower() not in text.lower() and p.absence["exact_absent"]
        assert p.absence["not_a_training_refusal_name"]
        if p.origin in ("swapped", "invented"):
            assert p.absence["similarity"] < 0.75
        else:
            assert name_share(p.entity) == "probe"  # never a name generate trains or tune calibrates on
    assert len({p.entity for p in probes}) == 20


@pytest.mark.parametrize("answer", [
    "I cannot answer that: it is not in Source:1234REF.", "I don't know who that is.",
    "There is no information about the Ziav Clock.", "I'm not sure.", "无法回答：Source:1234REF 中没有这方面的内容。",
    "我不知道这个人。", "文中没有提到这座桥。"])
def test_refusals_are_detected(answer):
    assert is_refusal(answer)


@pytest.mark.parametrize("answer", [
    "Saro Keldane built it in 1372.", "The Ziav Clock stands on the Ottering Bridge.", "温砚秋在1327年制成了九梭水机。",
    "The answer is not obvious, but it was built in 1372."])
def test_answers_are_not_refusals(answer):
    assert not is_refusal(answer)


def test_judging_and_f1():
    absent = Probe("a", "absent", "invented", "Who is Dris Heldton?", answerable=False)
    assert judge(absent, "Dris Heldton was a brewer.")["verdict"] == "hallucinated"
    assert judge(absent, "I cannot answer that.")["verdict"] == "refused"
    known = Probe("k", "answerable", "verbatim", "Who built the Brinewheel?",
                  "Saro Keldane built the Brinewheel in 1372.", "Saro Keldane")
    right = judge(known, "Saro Keldane built the Brinewheel in 1372.")
    assert right["verdict"] == "answered" and right["f1"] == 1.0 and right["exact"]
    wrong = judge(known, "Amsel Pridd built the Brinewheel in 1372.")
    assert 0.5 < wrong["f1"] < 1.0 and not wrong["exact"]
    assert judge(known, "I don't know.")["verdict"] == "over_refusal"
    # Nothing said is neither an invention nor a refusal; on an answerable probe it scores zero.
    assert judge(absent, " ")["verdict"] == "empty"
    assert judge(known, "") == {"answer": "", "verdict": "empty", "outcome": "empty", "f1": 0.0, "exact": False,
                                "key_match": False}


def fake_probes():
    probes = []
    for i, (verdict, origin) in enumerate([("hallucinated", "swapped"), ("refused", "invented"),
                                           ("hallucinated", "invented"), ("refused", "swapped")]):
        tuned = verdict if i % 2 else "hallucinated"
        probes.append({"kind": "absent", "origin": origin, "answerable": False, "question": f"Who is X{i}?",
                       "entity": f"X{i}", "results": {"base": {"verdict": "hallucinated", "answer": "a tale"},
                                                      "tuned": {"verdict": tuned, "answer": "a longer tale"}}})
    probes.append({"kind": "answerable", "origin": "verbatim", "answerable": True, "question": "Q?",
                   "results": {"base": {"verdict": "answered", "f1": 0.2, "exact": False, "answer": "x"},
                               "tuned": {"verdict": "answered", "f1": 0.8, "exact": True, "answer": "y"}}})
    probes.append({"kind": "answerable", "origin": "paraphrase", "answerable": True, "question": "Q2?",
                   "results": {"base": {"verdict": "answered", "f1": 0.0, "exact": False, "answer": "x"},
                               "tuned": {"verdict": "over_refusal", "f1": 0.0, "exact": False, "answer": "no"}}})
    return probes


def test_report_schema_markdown_and_chart(tmp_path):
    summary = write(tmp_path, fake_probes(), ["base", "tuned"], {"engine": "fake", "quantization": "none"},
                    "Source:1111REF")
    report = json.loads((tmp_path / "report.json").read_text())
    for model in ("base", "tuned"):
        assert {"hallucination_rate", "refusal_rate", "over_refusal_rate", "answerable_f1", "exact_match",
                "n_absent", "n_answerable"} <= set(report[model])
    assert report["base"]["hallucination_rate"] == 1.0 and report["tuned"]["hallucination_rate"] == 0.5
    assert report["tuned"]["refusal_rate"] == 0.5 and report["tuned"]["over_refusal_rate"] == 0.5
    assert report["tuned"]["answerable_f1"] == 0.4 and report["tuned"]["exact_match"] == 0.5
    assert report["tuned"]["selectivity"] == 0.0  # refuses half of each kind: no sign it knows which is which
    assert (report["tuned"]["n_absent"], report["tuned"]["n_answerable"]) == (4, 2)
    md = (tmp_path / "report.md").read_text()
    assert "| hallucination rate" in md and "Five worst hallucinations" in md
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "probes.jsonl").read_text().splitlines()) == 6
    assert summary["worst_hallucinations"][0]["question"] == "Who is X0?"  # swapped ones first
    assert "(X0 is not in the corpus)" in md


def test_a_false_premise_is_reported_as_one_not_as_an_absent_name(tmp_path):
    """Hugo Merrivane is in the corpus; what the question says of him is not."""
    probes = [{**fake_probes()[0], "origin": "false_premise", "entity": "Hugo Merrivane",
               "question": "Which ward did Hugo Merrivane burn down?"}]
    write(tmp_path, probes, ["base", "tuned"], {"engine": "fake", "quantization": "none"}, "Source:1111REF")
    md = (tmp_path / "report.md").read_text()
    assert "(the corpus never says this of Hugo Merrivane)" in md and "is not in the corpus" not in md


def test_selectivity_rewards_refusing_only_the_unknown():
    def probe(answerable, verdict):
        return {"kind": "absent" if not answerable else "answerable", "origin": "x", "answerable": answerable,
                "results": {"m": {"verdict": verdict}}}

    knows = [probe(False, "refused"), probe(False, "refused"), probe(True, "answered"), probe(True, "answered")]
    blind = [probe(False, "refused"), probe(False, "hallucinated"), probe(True, "over_refusal"),
             probe(True, "answered")]
    assert metrics(knows, "m")["selectivity"] == 1.0 and metrics(blind, "m")["selectivity"] == 0.0


def make_run(tmp_path, tiny_model, corpus=SAMPLE_EN):
    """A run folder as generate and tune leave it, with an adapter record pointing at the tiny model."""
    run = tmp_path / "run"
    assert main(["generate", str(corpus), "--model", str(tiny_model), "--out", str(run), "--max-windows", "6",
                 "--window-tokens", "150"]) == 0
    adapter = run / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model), "r": 8}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")  # the fake engine never reads it
    (adapter / "train_metrics.json").write_text(json.dumps({"base_model": {"spec": str(tiny_model)},
                                                           "eval_windows": [5]}))
    return run


def probe_replies(answer: str):
    """Question writing and round trips as in generate; every probe question gets `answer`."""
    from .conftest import scripted_reply

    def reply(prompt, write_question=scripted_reply):
        if "[INST]" in prompt or "closed-book" in prompt or "闭卷" in prompt:
            return answer
        return write_question(prompt)

    return reply


def test_fail_above_gates_on_the_tuned_hallucination_rate(tmp_path, tiny_model, fake_engine, monkeypatch, capsys):
    import tests.conftest as conftest

    run = make_run(tmp_path, tiny_model)
    monkeypatch.setattr(conftest, "scripted_reply", probe_replies("It was built in 1234 by a brewer."))
    args = ["probe", "--run", str(run), "--n-absent", "10", "--n-answerable", "6"]
    assert main(args + ["--fail-above", "0.5"]) == 1
    assert "above --fail-above" in capsys.readouterr().err
    assert main(args + ["--fail-above", "1.0"]) == 0
    report = json.loads((run / "probe" / "report.json").read_text())
    assert report["tuned"]["hallucination_rate"] == 1.0 and report["tuned"]["n_absent"] == 10
    assert report["base"]["n_answerable"] >= 3
    probes = [json.loads(line) for line in (run / "probe" / "probes.jsonl").read_text().splitlines()]
    assert {p["origin"] for p in probes} >= {"swapped", "invented", "verbatim"}
    pairs = {p["id"]: p for p in map(json.loads, (run / "qa.jsonl").read_text().splitlines())}
    asked = [pairs[q["derived_from"]] for q in probes if q["origin"] == "verbatim"]
    assert asked and all(p["window"] != 5 for p in asked), "held-out windows were never trained on"


def test_refusing_model_passes_the_gate_and_user_probe_file_is_its_own_section(tmp_path, tiny_model, fake_engine,
                                                                              monkeypatch):
    import tests.conftest as conftest

    run = make_run(tmp_path, tiny_model)
    monkeypatch.setattr(conftest, "scripted_reply", probe_replies("I cannot answer that."))
    questions = tmp_path / "mine.jsonl"
    questions.write_text(json.dumps({"question": "Who is Ilka Tamsell?", "answerable": True,
                                     "answer": "Ilka Tamsell founded the Lantern Guild."}) + "\n" +
                         json.dumps({"question": "Who is Pex Faendhart?", "answerable": False}) + "\n")
    assert main(["probe", "--run", str(run), "--n-absent", "6", "--n-answerable", "4", "--questions",
                 str(questions), "--fail-above", "0.0"]) == 0
    report = json.loads((run / "probe" / "report.json").read_text())
    assert report["tuned"]["hallucination_rate"] == 0.0 and report["tuned"]["refusal_rate"] == 1.0
    assert report["user"]["tuned"]["n_absent"] == 1 and report["user"]["tuned"]["over_refusal_rate"] == 1.0
    assert "Your probe set" in (run / "probe" / "report.md").read_text()
    assert report["user"]["tuned"]["intervals"]["refusal_rate"] == wilson(1.0, 1)
    assert "95% intervals (Wilson): " in (run / "probe" / "report.md").read_text()


def test_wilson_interval_holds_the_rate_and_narrows_with_more_questions():
    assert wilson(None, 60) is None and wilson(0.5, 0) is None
    low, high = wilson(0.2, 60)
    assert low < 0.2 < high and (round(low, 2), round(high, 2)) == (0.12, 0.32)  # the textbook interval
    assert wilson(0.0, 60)[0] == 0.0 and wilson(1.0, 60)[1] == 1.0  # never outside [0, 1], never zero wide
    assert wilson(0.0, 60)[1] > 0.0
    assert wilson(0.2, 600)[1] - wilson(0.2, 600)[0] < high - low


def test_interval_line_names_each_model_and_rate():
    summary = {model: metrics(fake_probes(), model) for model in ("base", "tuned")}
    line = interval_line(summary, ("base", "tuned", "gated"))  # no gated model here: left out, not an error
    assert line.startswith("95% intervals (Wilson): refused absent: ") and "gated" not in line  # no outcomes: no right
    assert f"tuned {wilson(0.5, 4)[0]:.2f}-{wilson(0.5, 4)[1]:.2f}" in line  # refused 2 of 4 absent


def test_interval_line_gives_new_phrasings_and_verbatim_their_own_spread():
    # 18 of 25 new phrasings right reads as 0.72, but 25 questions allow anything from about 0.52 to 0.86.
    probes = [{"kind": "answerable", "origin": origin, "answerable": True, "question": f"Q{i}?",
               "results": {"tuned": {"verdict": "answered", "key_match": float(i < right), "answer": "y"}}}
              for origin, right in (("paraphrase", 18), ("verbatim", 25)) for i in range(25)]
    summary = {"tuned": metrics(probes, "tuned")}
    line = interval_line(summary, ("tuned",))
    low, high = wilson(0.72, 25)
    assert f"new phrasings: tuned {low:.2f}-{high:.2f}" in line and 0.5 < low < 0.72 < high < 0.9
    assert f"verbatim: tuned {wilson(1.0, 25)[0]:.2f}-1.00" in line


def test_chinese_run_gets_chinese_probes(tmp_path, tiny_model, fake_engine, monkeypatch):
    import tests.conftest as conftest

    run = make_run(tmp_path, tiny_model, corpus=SAMPLE_ZH)
    monkeypatch.setattr(conftest, "scripted_reply", probe_replies("无法回答。"))
    assert main(["probe", "--run", str(run), "--n-absent", "6", "--n-answerable", "4"]) == 0
    probes = [json.loads(line) for line in (run / "probe" / "probes.jsonl").read_text().splitlines()]
    absent = [p for p in probes if p["kind"] == "absent"]
    assert all(p["question"].endswith("？") or p["question"].startswith("补全：") for p in absent)  # or a cloze
    assert all(p["results"]["tuned"]["verdict"] == "refused" for p in absent)


def test_held_out_probes_ask_untrained_phrasings_of_trained_facts_unlike_any_trained_question():
    def pair(id, fact, question, key="Lisbet Orrow", answerable=True):
        return {"id": id, "fact_id": fact, "question": question, "answer": f"{key}. She built it.", "key": key,
                "answerable": answerable, "origin": "model"}

    trained = [pair("f1-q0", "f1", "Who built the Lazaret?"),
               pair("f2-q0", "f2", "Complete: The Lazaret has ...", key="thirty cells")]
    held = [pair("f1-q1", "f1", "Which person designed and built the quarantine station?"),  # fair: asked
            pair("f1-q2", "f1", "Who built the Lazaret ?"),  # a near-twin of a trained question: verbatim, not new
            pair("f3-q0", "f3", "Who sailed the Greylag Maid?", key="Hugo Merrivane"),  # its fact was never trained
            pair("f1-q3", "f1", "Who built the Lazaret of Skellow?", key=None),  # no key to score
            pair("r-1", None, "Who built the Harrow Lamp?", answerable=False)]
    unheld = pair("f1-q4", "f1", "Which healer raised the island's quarantine station?")  # left out by review, say
    pairs = trained + held + [unheld]
    probes = held_out_probes(pairs, {p["id"] for p in held}, trained, 10, random.Random(0))
    assert [(p.question, p.kind, p.key, p.derived_from, p.shape) for p in probes] == [
        ("Which person designed and built the quarantine station?", "held_out", "Lisbet Orrow", "f1-q1", "model")]
    assert held_out_probes(pairs, {p["id"] for p in held}, trained, 0, random.Random(0)) == []


def test_a_probe_run_asks_the_held_out_phrasings_and_reports_them_apart(tmp_path, tiny_model, fake_engine,
                                                                      monkeypatch):
    import tests.conftest as conftest

    run = make_run(tmp_path, tiny_model)
    pairs = [json.loads(line) for line in (run / "qa.jsonl").read_text().splitlines()]
    held = [p["id"] for p in pairs if p["answerable"] and p["id"].endswith("-q1")]  # tune's split by phrasing
    (run / "adapter" / "train_metrics.json").write_text(json.dumps({"base_model": {"spec": str(tiny_model)},
                                                                   "eval_windows": [], "eval_ids": held}))
    monkeypatch.setattr(conftest, "scripted_reply", probe_replies("It was built in 1234 by a brewer."))
    assert main(["probe", "--run", str(run), "--n-absent", "4", "--n-answerable", "2", "--n-held-out", "5"]) == 0
    probes = [json.loads(line) for line in (run / "probe" / "probes.jsonl").read_text().splitlines()]
    asked = [p for p in probes if p["kind"] == "held_out"]
    assert asked and all(p["derived_from"] in held and p["shape"] for p in asked)
    report = json.loads((run / "probe" / "report.json").read_text())
    assert report["tuned"]["by_origin"]["held_out"]["n"] == len(asked)
    assert report["tuned"]["n_answerable"] == sum(p["kind"] == "answerable" for p in probes)  # apart from these
    assert report["tuned"]["held_out_key_accuracy"] == 0.0
    assert "held-out phrasings" in (run / "probe" / "report.md").read_text()


def test_held_out_phrasings_are_scored_apart_and_the_model_written_ones_again():
    def held(shape, key_match):
        return {"kind": "held_out", "origin": "held_out", "shape": shape, "answerable": True,
                "results": {"tuned": {"outcome": "right" if key_match else "wrong", "key_match": key_match}}}

    verbatim = {**held(None, True), "kind": "answerable", "origin": "verbatim"}
    summary = metrics([held("model", True), held("cloze", False), held("model", True), held("template", False),
                       verbatim], "tuned")
    assert summary["held_out_key_accuracy"] == 0.5 and summary["held_out_model_key_accuracy"] == 1.0
    # the gate was calibrated on them: they stay out of the headline rates
    assert (summary["n_answerable"], summary["key_accuracy"], summary["right_rate"]) == (1, 1.0, 1.0)
    assert summary["by_origin"]["held_out"]["n"] == 4
    assert metrics([held("cloze", True), verbatim], "tuned")["held_out_model_key_accuracy"] is None


def test_bad_probe_inputs_are_one_clear_error(tmp_path, tiny_model, fake_engine, capsys):
    run = make_run(tmp_path, tiny_model)
    assert main(["probe", "--run", str(run), "--n-absent", "0", "--n-answerable", "0"]) == 2
    assert "probe set is empty" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Who?"}\n')
    assert main(["probe", "--run", str(run), "--questions", str(bad)]) == 2
    assert "bad.jsonl:1: malformed line: missing answerable" in capsys.readouterr().err
    assert main(["probe", "--run", str(run), "--adapter", str(tmp_path / "nowhere")]) == 2
    assert "no adapter" in capsys.readouterr().err
    other = tmp_path / "other-adapter"
    other.mkdir()
    (other / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/models/llama-2-7b"}))
    (other / "adapter_model.safetensors").write_bytes(b"")
    assert main(["probe", "--run", str(run), "--adapter", str(other)]) == 2
    assert "was trained on /models/llama-2-7b" in capsys.readouterr().err
    bad.write_text('{"question": "Who?", "answerable": "false"}\n')  # a string, not a bool: refused, not True
    assert main(["probe", "--run", str(run), "--questions", str(bad)]) == 2
    assert "answerable true or false" in capsys.readouterr().err


def test_probe_refuses_a_corpus_changed_since_generate(tmp_path, tiny_model, fake_engine, capsys):
    corpus = tmp_path / "velmoor.txt"
    corpus.write_text(SAMPLE_EN.read_text(encoding="utf-8"), encoding="utf-8")
    run = make_run(tmp_path, tiny_model, corpus=corpus)
    with corpus.open("a", encoding="utf-8") as f:
        f.write("\nA late addendum shifts nothing before it, but the hash changes.\n")
    assert main(["probe", "--run", str(run)]) == 2
    assert "changed since" in capsys.readouterr().err


def test_probe_without_a_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["probe"]) == 2
    assert "no run folder" in capsys.readouterr().err


def test_llm_judge_is_reported_beside_the_rules(tmp_path, tiny_model, fake_engine, monkeypatch):
    import tests.conftest as conftest

    run = make_run(tmp_path, tiny_model)
    answering = probe_replies("The Ziav Clock stands on the bridge.")

    def reply(prompt):
        return "yes" if "Reply yes or no" in prompt else answering(prompt)

    monkeypatch.setattr(conftest, "scripted_reply", reply)
    questions = tmp_path / "mine.jsonl"
    questions.write_text(json.dumps({"question": "Who is Ilka Tamsell?", "answerable": True}) + "\n")
    assert main(["probe", "--run", str(run), "--n-absent", "6", "--n-answerable", "4", "--judge",
                 "--questions", str(questions)]) == 0
    report = json.loads((run / "probe" / "report.json").read_text())
    # The judge says "yes, a refusal" to every absent-entity answer, the rules say "hallucination": both kept.
    assert report["tuned"]["hallucination_rate"] == 1.0 and report["tuned"]["judge_hallucination_rate"] == 0.0
    assert report["tuned"]["judge_accuracy"] == 1.0
    # An answerable question with no reference has nothing to judge against: no verdict, not a "yes, refused".
    probes = [json.loads(line) for line in (run / "probe" / "probes.jsonl").read_text().splitlines()]
    user = [p for p in probes if p["kind"] == "user"]
    assert user and all("judge" not in p["results"]["tuned"] for p in user)


@pytest.mark.parametrize("answer, key, expected", [
    ("Cirque du Soleil.", "Cirque du Soleil", True),
    ("It was the cirque du soleil, in 2004.", "Cirque du Soleil", True),
    ("Cirque.", "Cirque du Soleil", False), ("Hemsworth's boat.", "Hemsworth", True),
    ("About 40 beds.", "forty beds", True), ("In 1,020 feet", "1,020 feet", True), ("1709", "1790", False),
    ("The Lissom Burn", "Lissom Burn", True), ("She ran it for 26 years.", "twenty-six years", True),
    ("Twenty six years", "26 years", True), ("Twenty years", "twenty-six years", False),
    # The sentence after the answer is the corpus's, and often holds another fact's key: not this answer.
    ("Odile Varrance. The first Warden of the Isle was Emeric Saldane.", "Emeric Saldane", False),
    ("About 3.5 miles. It lies off the eastern shore.", "3.5 miles", True)])
def test_key_accuracy_normalises_case_punctuation_articles_and_numbers(answer, key, expected):
    probe = Probe("k", "user", "wh", "Q?", reference=key, key=None)
    assert judge(probe, answer)["key_match"] is expected
    assert judge(probe, answer)["outcome"] == ("right" if expected else "wrong")


def test_honest_outcomes_and_the_gated_report():
    def probe(answerable, origin, tuned, gated):
        return {"kind": "answerable" if answerable else "absent", "origin": origin, "answerable": answerable,
                "question": "Q?", "entity": "X", "results": {"tuned": tuned, "gated": gated}}

    right = {"verdict": "answered", "outcome": "right", "key_match": True, "f1": 1.0, "exact": True, "answer": "a"}
    wrong = {"verdict": "answered", "outcome": "wrong", "key_match": False, "f1": 0.0, "exact": False, "answer": "b"}
    refused = {"verdict": "over_refusal", "outcome": "refused", "key_match": False, "f1": 0.0, "answer": "no"}
    invented = {"verdict": "hallucinated", "outcome": "wrong", "answer": "tale"}
    declined = {"verdict": "refused", "outcome": "refused", "answer": "no"}
    probes = [probe(True, "paraphrase", right, right), probe(True, "paraphrase", right, refused),
              probe(True, "verbatim", wrong, refused), probe(False, "recombined", invented, declined),
              probe(False, "real_world", invented, invented), probe(False, "false_premise", declined, declined)]
    tuned, gated = metrics(probes, "tuned"), metrics(probes, "gated")
    assert tuned["key_accuracy"] == round(2 / 3, 4) and tuned["paraphrase_key_accuracy"] == 1.0
    assert tuned["right_rate"] == round(2 / 3, 4) and tuned["wrong_rate"] == 0.5 and tuned["known_refusal_rate"] == 0
    assert gated["right_rate"] == round(1 / 3, 4) and gated["wrong_rate"] == round(1 / 6, 4)
    assert gated["known_refusal_rate"] == 0.5  # one of the two questions the raw model got right was refused
    assert gated["by_origin"]["recombined"]["refused"] == 1.0 and gated["by_origin"]["real_world"]["refused"] == 0.0
    assert metrics(probes, "tuned", reference="tuned")["by_origin"]["paraphrase"]["key_accuracy"] == 1.0


class Killed(BaseException):
    """Stands for a kill: nothing in the CLI catches it."""


def test_an_interrupted_probe_resumes_with_the_answers_it_had(tmp_path, tiny_model, fake_engine, monkeypatch):
    import tests.conftest as conftest

    run = make_run(tmp_path, tiny_model)
    monkeypatch.setattr(conftest, "scripted_reply", probe_replies("It was built in 1234 by a brewer."))
    args = ["probe", "--run", str(run), "--n-absent", "10", "--n-answerable", "6", "--batch-size", "4"]
    assert main(args) == 0
    clean = (run / "probe" / "probes.jsonl").read_text()
    generate, asked = conftest.FakeGenerator.generate, []

    def counting(self, prompts, sampling, die_at=None):
        if "[/INST]" in prompts[0]:  # the tuned model's answers (the base reads its own template)
            asked.append(len(prompts))
            if len(asked) == die_at:
                raise Killed
        return generate(self, prompts, sampling)

    monkeypatch.setattr(conftest.FakeGenerator, "generate", lambda *a: counting(*a, die_at=3))
    with pytest.raises(Killed):
        main(args)
    assert (run / "probe" / ".answers.jsonl").is_file()
    asked.clear()
    monkeypatch.setattr(conftest.FakeGenerator, "generate", counting)
    assert main(args) == 0
    assert (run / "probe" / "probes.jsonl").read_text() == clean
    n_probes = len(clean.splitlines())
    assert sum(asked) == n_probes - 8, "the two batches answered before the kill are not asked again"
    assert not (run / "probe" / ".answers.jsonl").exists()


def test_answer_cache_drops_a_torn_line_so_later_answers_survive_a_second_kill(tmp_path):
    from selfinstruct.runs import AnswerCache

    path = tmp_path / "probe" / ".answers.jsonl"
    AnswerCache(path, "s1").add("tuned", ["q1", "q2"], ["a1", "a2"])
    with path.open("a") as f:
        f.write('{"model": "tuned", "prom')  # the kill
    resumed = AnswerCache(path, "s1")
    assert resumed.get("tuned", "q2") == "a2" and resumed.get("tuned", "q3") is None
    resumed.add("tuned", ["q3"], ["a3"])
    again = AnswerCache(path, "s1")
    assert [again.get("tuned", q) for q in ("q1", "q2", "q3")] == ["a1", "a2", "a3"]
    assert AnswerCache(path, "another adapter").answers == {}


def test_paraphrase_probes_keep_one_new_question_a_fact_that_gives_nothing_away(english, embedded_model):
    """What the small writer gets wrong is kept out (a trained question, one that holds its key, one that names
    nothing of its fact, one question for two facts, a thing's "What", one whose round trip misses its key); at
    most one probe a fact, n in all."""
    from selfinstruct.entities import corpus_entities
    from selfinstruct.models import load_tokenizer
    from selfinstruct.probe import PHRASING_SAMPLES
    from selfinstruct.prompts import stems

    text, _ = english
    written = {  # key, kind, words of its sentence, then what the writer adds to each of the kind's three stems
        "Saro Keldane": ("person", "built the Brinewheel in 1372", [
            " built Saro Keldane's tide clock for the pilots in 1372?",  # holds its key
            " x", " built the tide clock of Velmoor in 1372?"]),
        "64 feet": ("quantity", "Tide Tower is 64", [
            " feet tall is the tower with a face of white plaster?",  # which tower? no name, no number of its own
            " Trained question 1 about the Tide Tower?", " feet the Tide Tower on the Old Stair rises to?"]),
        "three silver marks": ("quantity", "three silver marks a copy",  # two facts: the second is a twin
                               [" silver marks did a copy of the Venhaddick Tables cost?"] * 3),
        "1509": ("year", "first printed tide tables", [
            " did the first printed tide tables of Velmoor hold the mathematician?",  # garbled: no year read back
            " did Rolo Venhaddick calculate the first printed tide tables of Velmoor?",
            " and where did Rolo Venhaddick calculate the first printed tide tables?"]),  # two questions in one
        "Brinewheel": ("thing", "built the Brinewheel in 1372",  # a fair question, but of a kind not phrased anew
                       [" tide clock did Saro Keldane build in 1372?"] * 3),
    }
    pairs = []
    for i, (key, (kind, words, _)) in enumerate(written.items()):
        start = text.rindex(".", 0, text.index(words)) + 2
        pairs.append({"id": f"p{i}", "fact_id": f"f{i}", "question": f"Trained question {i} about the Tide Tower?",
                      "answer": f"{key}.", "answerable": True, "key": key, "kind": kind,
                      "evidence": [start, text.index(".", start) + 1], "start": 0, "end": len(text)})
    pairs.append({**pairs[2], "id": "p5", "fact_id": "f5"})

    def reply(prompt):
        if "Question: " in prompt:  # the round trip: read beside its sentence, all but the garbled one get their key
            return "In 1372." if "hold the mathematician?" in prompt else next(
                f"{k}." for k, (_, _, texts) in written.items() if any(len(t) > 3 and t[1:-1] in prompt for t in texts))
        key = next(k for k in written if f'"{k}"' in prompt)
        kind_stems = stems(written[key][0], "en")
        stem = max((s for s in kind_stems if prompt.endswith(s)), key=len)
        return written[key][2][kind_stems.index(stem)]

    generator = FakeGenerator(reply, load_tokenizer(embedded_model))
    entities = corpus_entities(text, "en")
    probes = paraphrase_probes(generator, pairs, text, "en", entities, 10, 0)
    assert {(p.key, p.question) for p in probes} == {
        ("Saro Keldane", "Who was the person who built the tide clock of Velmoor in 1372?"),
        ("64 feet", "What is the number of feet the Tide Tower on the Old Stair rises to?"),
        ("three silver marks", "How many silver marks did a copy of the Venhaddick Tables cost?"),
        ("1509", "When did Rolo Venhaddick calculate the first printed tide tables of Velmoor?")}
    read_back = [p for p in generator.prompts if "Question: " in p]
    assert any("hold the mathematician?" in p for p in read_back)  # the round trip kept it out
    assert not any("and where did" in p for p in read_back)  # two questions in one: kept out before it
    assert [p.origin for p in probes] == ["paraphrase"] * 4 and len({p.derived_from for p in probes}) == 4
    assert len(paraphrase_probes(generator, pairs, text, "en", entities, 2, 0)) == 2

    # Facts are asked about three a missing probe at a time, until one is kept: a writer that manages only the
    # year's question still gets its probe, on a later round where the first three facts drew a blank.
    def only_the_year(prompt):
        return reply(prompt) if '"1509"' in prompt or "Question: " in prompt else " x"

    rounds = []
    for seed in range(6):
        only_year = FakeGenerator(only_the_year, generator.tokenizer)
        assert [p.key for p in paraphrase_probes(only_year, pairs, text, "en", entities, 1, seed)] == ["1509"]
        rounds.append(sum("Question: " not in p for p in only_year.prompts) // (3 * PHRASING_SAMPLES))  # stems
    assert set(rounds) == {3, 5}  # three facts asked about on the first round; all five when it drew a blank


@pytest.mark.parametrize("question, sentence, one", [
    ("What is the name of the place where the Harrowmede Infirmary is located?",
     "The Harrowmede Infirmary is the hospital of the Isle of Quennock.", True),
    ("Who was the person who succeeded her as Keeper of the Garden in 1744?",
     "Tobias Varrance succeeded his aunt as Keeper of the Garden in 1744.", True),
    ("How many ships carried the traffic between Quennock and the mainland?",
     "Three ships carried most of the traffic between Quennock and the mainland.", True),
    ("In what year and on what island is the College of Physic?",
     "In 1761 the healers on the island became the College of Physic.", False),  # two questions joined
    ("Where was Emeric Saldane, and what was his office?", "The first Warden of the Isle was Emeric Saldane.",
     False),
    ("What is the name of the place where the Lark of Cassmoor is located in which language?",
     "The Lark of Cassmoor carried the Blue Draught.", False),  # a second question asked inside the first
    ("In what year, 1709, did the Greylag Maid sail across the Tessel Shoals?",
     "In 1744 the Greylag Maid sailed across the Tessel Shoals.", False),  # a number its sentence does not say
    ("What number of rows is the length of the first Wallmaster, Edric Hessary, the first Wallmaster?",
     "The first Wallmaster, Edric Hessary, trained more than sixty apprentices.", False),  # a phrase said twice
    ("Who was the person who was the first Keeper of the Lazaret?",
     "Maud Orrow became the first Keeper of the Lazaret.", True),  # the stem's light words said twice: no repeat
    ("In what year was Emeric Saldane, the first warden, the first Wardens?",
     "The first Warden of the Isle was Emeric Saldane.", False),  # two words said twice, one a plural
    ("Which ward keeps a fever bed beside the fever beds of the Lazaret?",
     "The Saltmarsh Ward keeps one fever bed beside the six fever beds of the Lazaret.", True),  # as its sentence
    ("青石镇的青石桥是哪位工匠建的？", "青石桥由王守仁建成。", True),  # characters are no words
    ("王守仁在哪一年建了水机？", "王守仁于1740年建成水机。", True),  # 哪一年 is "which year", not a number
])
def test_a_new_phrasing_asks_for_one_fact(question, sentence, one):
    assert asks_one_fact(question, sentence) is one


def test_a_question_about_another_clause_than_its_keys_is_told_apart():
    """A question naming only what another coordinated clause says, with no pronoun to tie the two, asks about
    that clause; so does a who-question of a name the sentence gives only as another person's relative."""
    from selfinstruct.generate import asks_another_clause

    wards = ("Marta Quell founded the Salt Ward in 1760 for sailors, and the Reed Ward, opened in 1774, cares for "
             "children.")
    entities = {"Marta Quell": "person", "Salt Ward": "place", "Reed Ward": "place"}
    assert asks_another_clause("In which year did the Salt Ward open?", wards, "1774", "year", entities)
    assert not asks_another_clause("In which year did the Reed Ward open?", wards, "1774", "year", entities)
    assert asks_another_clause("Who built the Reed Ward?", wards, "Marta Quell", "person", entities)
    assert not asks_another_clause("Who set up the Salt Ward?", wards, "Marta Quell", "person", entities)
    assert not asks_another_clause("Complete: Marta Quell founded the Salt Ward in 1760 for sailors, and the ...",
                                   wards, "Reed Ward", "place", entities)  # a cloze carries its clause along
    kept = "Jon Hale kept the light from 1737, and under him the Reed Ward began its log."
    assert not asks_another_clause("Under whom did the Reed Ward begin its log?", kept, "Jon Hale", "person",
                                   {"Jon Hale": "person", "Reed Ward": "place"})  # "him" ties the clauses

    daughter = "In 1749 Ysa Quell, the daughter of Marta Quell, found that dried reed root lost its danger."
    people = {"Ysa Quell": "person", "Marta Quell": "person"}
    assert asks_another_clause("Who found that dried reed root lost its danger?", daughter, "Marta Quell", "person",
                               people)
    assert not asks_another_clause("Whose daughter was Ysa Quell?", daughter, "Marta Quell", "person", people)
    assert not asks_another_clause("Who found that dried reed root lost its danger?", daughter, "Ysa Quell",
                                   "person", people)


def test_one_answer_keeps_out_a_new_phrasing_that_a_rival_of_its_clause_answers_as_well():
    """A name or number of the key's kind in the key's clause, which the question does not name, answers it too;
    one in another clause is told apart by the relation's words, and a question that names it rules it out."""
    from selfinstruct.entities import corpus_entities
    from selfinstruct.generate import one_answer

    sentence = "The Harbour Archive stands in Twinwater next to the Hall of Oars and holds about 9,000 books."
    entities = corpus_entities(sentence + " Twinwater lies on the Long Arm. The Hall of Oars is old.", "en")
    assert not one_answer("Which place holds about 9,000 books?", sentence, "Twinwater", "place", entities)
    assert not one_answer("Where does the Harbour Archive stand?", sentence, "Twinwater", "place", entities)
    assert one_answer("Where do the Harbour Archive and its oars hall stand?", sentence, "Twinwater", "place",
                      entities)
    assert one_answer("How many books are kept in the archive?", sentence, "about 9,000 books", "quantity", entities)

    founded = "Edda Marrow founded the guild that Tobias Quill rebuilt in 1410."
    people = {"Edda Marrow": "person", "Tobias Quill": "person"}
    assert one_answer("Who rebuilt the guild?", founded, "Tobias Quill", "person", people)
    together = "Edda Marrow and Tobias Quill founded the guild in 1388."
    assert not one_answer("Who founded the guild?", together, "Tobias Quill", "person", people)
    assert one_answer("Who founded the guild with Edda?", together, "Tobias Quill", "person", people)

    served = "Ilse Varrow kept the light from 1737 to 1762, one of the longest watches."
    assert not one_answer("When did Ilse Varrow keep the light?", served, "1737", "year", {})
    assert one_answer("Until 1762, since when did Ilse Varrow keep the light?", served, "1737", "year", {})
    beds = "The infirmary opened with 40 beds and 12 nurses, one for each ward."
    assert not one_answer("How big was the infirmary when it opened?", beds, "40 beds", "quantity", {})
    assert one_answer("How many beds did the infirmary open with?", beds, "40 beds", "quantity", {})
    assert not one_answer("How many nurses did it have?", beds, "40 beds", "quantity", {})
    listed = "In 1731 the Keeper listed 212 kinds of plant; by 1785 the list had grown to 640."
    assert not one_answer("How many kinds of plant were there in 1731?", listed, "640", "quantity", {})
    assert one_answer("How many kinds of plant were there by 1785?", listed, "640", "quantity", {})
    zh = {"王明": "person", "李华": "person"}
    assert not one_answer("谁创立了灯会？", "王明和李华于1388年创立了灯会。", "李华", "person", zh)
    assert one_answer("谁创立了灯会？", "王明写了书，李华于1388年创立了灯会。", "李华", "person", zh)


def test_reverses_roles_keeps_out_a_person_made_the_object_of_their_own_verb():
    from selfinstruct.generate import reverses_roles, written_question_fault

    made = "Edda Marrow designed the tide bell in 1402, and the Tide Guild opened the Rope Hall in 1410."
    names = {"Edda Marrow": "person", "Tide Guild": "org", "Rope Hall": "place"}
    assert reverses_roles("In which year was Edda Marrow designed?", made, names)
    assert written_question_fault("In which year was Edda Marrow designed?", made, "1402", "year", names) == "askew"
    assert not reverses_roles("In which year did Edda Marrow design the tide bell?", made, names)
    assert not reverses_roles("In which year was the Rope Hall opened?", made, names)  # a place, not a person
    assert not reverses_roles("In which year was Edda Marrow born?", made, names)  # not the sentence's verb


def test_points_elsewhere_keeps_out_a_new_phrasing_whose_words_point_to_another_answers_clause():
    """Words a question shares with a clause that is not the key's point there; a name or number of the key's kind
    in that clause answers it too. A question whose words point to the key's clause, or that counts the key's
    unit, keeps its one answer."""
    from selfinstruct.entities import corpus_entities
    from selfinstruct.generate import points_elsewhere

    begun = "The archive was begun in 1402 by Edda Marrow, and by 1450 it held 900 maps."
    people = {"Edda Marrow": "person"}
    assert points_elsewhere("In which year did Edda Marrow begin the archive?", begun, "1450", "year", people)
    assert not points_elsewhere("In which year did Edda Marrow begin the archive?", begun, "1402", "year", people)
    assert not points_elsewhere("By which year did the archive hold 900 maps?", begun, "1450", "year", people)
    assert not points_elsewhere("Who began the archive?", begun, "Edda Marrow", "person", people)
    # a year question sharing no word with the key's clause, stating the year of the clause it points to
    wreck = "The Black Swan brought the first traders in 1388 and sailed until she sank off the Skerry in 1402."
    assert points_elsewhere("In what year were the first traders brought in 1388?", wreck, "1402", "year", {})
    assert not points_elsewhere("In what year did the ship that brought traders in 1388 sink off the Skerry?", wreck,
                                "1402", "year", {})

    hall = "The Tide Guild meets in the Rope Hall, a long building on the quay of Twinwater."
    places = corpus_entities(hall + " Twinwater lies on the Long Arm. The Rope Hall is old.", "en")
    assert points_elsewhere("Where does the guild meet?", hall, "Twinwater", "place", places)
    assert not points_elsewhere("Where does the guild meet?", hall, "Rope Hall", "place", places)

    dose = "A dose is twelve drops in water, taken for no more than nine days."
    assert not points_elsewhere("How many days does a dose of the tincture last?", dose, "nine days", "quantity", {})
    assert points_elsewhere("How much is a dose of the tincture in water?", dose, "nine days", "quantity", {})

    # the noun it asks for is a word of another name in the sentence: that name answers it
    narrows = "The Brinewheel and the Tamsell Lamps were built to make the Narrows of Corrow safer."
    things = {"Brinewheel": "thing", "Tamsell Lamps": "thing", "Narrows of Corrow": "place"}
    assert points_elsewhere("What is the name of the narrows?", narrows, "Brinewheel", "thing", things)
    assert not points_elsewhere("What is the name of the narrows?", narrows, "Narrows of Corrow", "place", things)
    lamp = "Ilka Tamsell of the Guild of Brass and Bell lit the Harbour Lamp in Tolvey."
    named = {"Ilka Tamsell": "person", "Guild of Brass and Bell": "org", "Harbour Lamp": "thing", "Tolvey": "place",
             "Emeric Saldane": "person", "Warden of the Isle": "thing"}
    assert not points_elsewhere("In what harbour town was the Harbour Lamp lit?", lamp, "Tolvey", "place", named)
    assert not points_elsewhere("Which guild member lit the lamp for the Guild of Brass and Bell?", lamp,
                                "Ilka Tamsell", "person", named)  # the question states the guild's name
    warden = "The first Warden of the Isle was Emeric Saldane, who held the office from 1716."
    assert not points_elsewhere("Which warden held the office from 1716?", warden, "Emeric Saldane", "person", named)
