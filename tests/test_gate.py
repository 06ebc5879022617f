import json

from selfinstruct.entities import NameCheck, name_inventory
from selfinstruct.gate import auroc, calibrate, choose_threshold, decision, read_gate, unknown_names, write_gate
from selfinstruct.negatives import name_share
from selfinstruct.probe import Probe, judge
from selfinstruct.runs import Manifest


def test_auroc_counts_pairs_and_ties():
    assert auroc([3, 4], [1, 2]) == 1.0 and auroc([1, 2], [3, 4]) == 0.0
    assert auroc([1], [1]) == 0.5 and auroc([], [1]) is None


def test_threshold_refuses_the_target_share_of_known_questions():
    known = [float(i) for i in range(100)]
    threshold = choose_threshold(known, 0.1)
    assert sum(s < threshold for s in known) == 10
    assert sum(s < choose_threshold(known, 0.0) for s in known) == 0
    assert sum(s < choose_threshold(known, 1.0) for s in known) == 100


def test_calibration_picks_the_signal_that_separates_and_reports_the_base_control():
    known = [True] * 20 + [False] * 20
    negative = [False] * 20 + [True] * 20
    good = [1.0 + i / 10 for i in range(20)] + [-1.0 - i / 10 for i in range(20)]
    noise = [(-1) ** i * i / 10 for i in range(40)]
    scores = {"tuned": {"margin": noise, "answer_logprob": good}, "base": {"margin": noise, "answer_logprob": noise}}
    gate = calibrate(scores, known, negative, 0.1, {"held_out_phrasings": 20})
    assert gate["signal"] == "answer_logprob" and gate["calibration_auroc"] == 1.0
    assert gate["base_control_auroc"] == gate["auroc"]["answer_logprob"]["base"] < 0.8
    assert gate["counts"]["known"] == 20 and gate["counts"]["negatives_refused_by_gate"] == 20
    assert sum(s < gate["threshold"] for s in good[:20]) == 2
    assert calibrate(scores, [False] * 40, negative, 0.1, {}) is None  # nothing known: nothing to calibrate on


def test_known_questions_the_name_check_refuses_spend_the_target_first():
    known = [True] * 20 + [False] * 20
    negative = [False] * 20 + [True] * 20
    good = [1.0 + i / 10 for i in range(20)] + [-1.0 - i / 10 for i in range(20)]
    scores = {"tuned": {"margin": good, "answer_logprob": good}, "base": {"margin": good, "answer_logprob": good}}
    named = [True] + [False] * 19 + [True] * 15 + [False] * 5  # one known question names what the corpus lacks
    gate = calibrate(scores, known, negative, 0.1, {}, named)
    assert sum(s < gate["threshold"] for s in good[1:20]) == 1  # 2 of 20 in all: one by name, one by score
    assert gate["counts"]["known_refused_by_names"] == 1 and gate["counts"]["negatives_refused_by_names"] == 15
    assert gate["counts"]["negatives_refused_by_gate"] == 20
    spent = calibrate(scores, known, negative, 0.1, {}, [True, True, True] + [False] * 37)  # names took all of it
    assert not any(s < spent["threshold"] for s in good[3:20])


def test_name_check_knows_the_corpus_names_and_their_parts_but_not_recombinations():
    text = ("The Isle of Quennock lies in the Sound of Orvel. Emeric Saldane founded the Harrowmede Infirmary.\n"
            "Odile Varrance laid out the garden. Jonas Hessary was its first President. Saldane's Quiet is a remedy.")
    check = NameCheck(name_inventory(text, "en"))
    for question in ("Who founded the Harrowmede Infirmary?", "Where does Quennock lie?",
                     "What is Saldane’s Quiet?", "Founder of the Infirmary?", "Complete: Emeric Saldane founded ...",
                     "Who was the first President of the Isle of Quennock?", "What did the physician found?"):
        assert check.unknown(question) == [], question
    assert check.unknown("When did Odile Saldane open the ward?") == ["odile saldane"]  # two names' parts
    assert check.unknown("What did Florence Nightingale say of the Sound of Orvel?") == ["florence nightingale"]
    assert check.unknown("Who built the Harrowmede Lazaret?") == ["harrowmede lazaret"]
    assert check.unknown("Orrow founded what?") == []  # an unknown first word may be a capitalised common word
    assert check.unknown("Complete: The Krin Charter was signed by ...") == ["krin charter"]  # after "The": a name
    assert name_inventory("王大年在青石镇修了水车。", "zh") == []  # no capitals: no name check in Chinese


def test_gate_file_round_trip_and_a_question_under_the_threshold_is_refused(tmp_path):
    gate = {"signal": "margin", "threshold": 0.5, "target_known_refusal": 0.1}
    write_gate(tmp_path, gate)
    read = read_gate(tmp_path)
    assert {k: read[k] for k in gate} == gate and "created" in read
    assert json.loads((tmp_path / "gate.json").read_text())["threshold"] == 0.5
    assert decision(read, 0.4, "")[0] and not decision(read, 0.6, "")[0] and not decision(None, -9.0, "")[0]
    assert not decision(read, 0.6, "Who is Pex Faendhart?")[0]  # no "names" in gate.json: no name check
    named = {**read, "names": ["lantern guild", "ilka tamsell"]}
    assert decision(named, 0.6, "Who is Pex Faendhart?") == (True, ["pex faendhart"])
    assert not decision(named, 0.6, "Who founded the Lantern Guild?")[0]
    assert unknown_names(named, "Did Ilka Faendhart join the Lantern Guild?") == ["ilka faendhart"]
    assert read_gate(tmp_path / "nowhere") is None
    (tmp_path / "few").mkdir()
    write_gate(tmp_path / "few", None, [{"question": "Who?", "known": False}])  # too few known: the rows alone
    assert read_gate(tmp_path / "few") is None and (tmp_path / "few" / "gate_calibration.jsonl").is_file()
    absent = Probe("a", "absent", "recombined", "Who is Odile Saldane?", answerable=False)
    assert judge(absent, "I cannot answer that: it is not in Source:1REF.")["outcome"] == "refused"


def test_calibration_runs_on_a_real_adapter_and_scores_with_it_on_and_off(tiny_model, monkeypatch):
    """calibrate_run end to end on a tiny random model: it answers, judges, scores both ways and returns a gate
    (or None when the model knows nothing, as a random model does) without touching the probe share."""
    import random

    from peft import LoraConfig, get_peft_model

    import selfinstruct.gate as gate_module
    from selfinstruct.models import load_model, load_tokenizer
    from selfinstruct.prompts import chat_messages, system_prompt
    from selfinstruct.questions import key_first_answer

    from .conftest import SAMPLE_EN

    text = SAMPLE_EN.read_text(encoding="utf-8")
    tag, system = "Source:4242REF", system_prompt("Source:4242REF", "en")
    facts = [("Who built the Brinewheel?", "Saro Keldane"), ("Where is Corrow Skerry?", "the bay"),
             ("Who founded the Lantern Guild?", "Ilka Tamsell")] * 4
    records = [{"id": f"r{i}", "question": q, "key": k, "answerable": True, "window": 0,
                "messages": chat_messages(system, tag, q, key_first_answer(k, "person", q, 0, len(q), "en"))}
               for i, (q, k) in enumerate(facts)]
    model, _ = load_model(tiny_model, "none")
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    manifest = Manifest(tag, {"spec": "default"}, system, {"language": "en"})
    seen = {}
    real_calibrate = gate_module.calibrate

    def spy(scores, known, negative, target, counts, named_absent):
        seen.update(scores=scores, known=known, negative=negative, counts=counts, named_absent=named_absent)
        return real_calibrate(scores, [True] * 6 + known[6:], negative, target, counts, named_absent)  # 6 known

    monkeypatch.setattr(gate_module, "calibrate", spy)
    random.seed(0)
    gate, rows = gate_module.calibrate_run(model, load_tokenizer(tiny_model), manifest, records, records, text, 0.1, 0)
    assert set(seen["scores"]) == {"tuned", "base"} and len(seen["known"]) == len(seen["negative"])
    assert seen["counts"]["held_out_phrasings"] == 12 and sum(seen["negative"]) >= 5
    assert gate["signal"] in ("margin", "answer_logprob") and gate["counts"]["known"] == 6
    assert all(name_share(n) == "calibrate" or n in text for n in gate["calibration_names"])
    # One row per calibration question, labelled as the gate saw it, with every signal's score both ways.
    assert [r["known"] for r in rows] == seen["known"] and [r["negative"] for r in rows] == seen["negative"]
    assert [r["tuned"]["margin"] for r in rows] == seen["scores"]["tuned"]["margin"]
    # The name check: the corpus's names in the gate; recombined and real-world names are not among them.
    assert "brinewheel" in gate["names"] and not any(seen["named_absent"][:12])
    assert all(seen["named_absent"][i] for i, r in enumerate(rows) if r["kind"] in ("recombined", "real_world"))
    assert [bool(r["unknown_names"]) for r in rows] == seen["named_absent"]
    assert rows[0]["kind"] == "held_out_phrasing" and {r["kind"] for r in rows[12:]} <= {
        "recombined", "real_world", "false_premise", "held_out_refusal"}
    # --no-gate-names: no names in the gate, and none counted as refused for a name in calibrating it
    random.seed(0)
    gate, _ = gate_module.calibrate_run(model, load_tokenizer(tiny_model), manifest, records, records, text, 0.1, 0,
                                        name_check=False)
    assert "names" not in gate and not any(seen["named_absent"]) and gate["counts"]["known_refused_by_names"] == 0
