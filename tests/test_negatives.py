import os
import random
import subprocess
import sys

import pytest

from selfinstruct.entities import corpus_entities
from selfinstruct.negatives import (
    USES,
    false_premises,
    name_share,
    real_world_names,
    recombined_names,
    swap_in_absent,
)

from .conftest import SAMPLE_EN, SAMPLE_ZH


@pytest.fixture(scope="module", params=[(SAMPLE_EN, "en"), (SAMPLE_ZH, "zh")], ids=["en", "zh"])
def corpus(request):
    path, language = request.param
    text = path.read_text(encoding="utf-8")
    return text, language, corpus_entities(text, language)


def test_recombined_names_are_built_from_corpus_parts_and_are_never_a_corpus_name(corpus):
    text, language, entities = corpus
    made = recombined_names(entities, language)
    assert len(made) >= 10
    assert not set(made) & set(entities)
    people = [n for n, k in made.items() if k == "person"]
    assert people, "one person's given name with another's family name"
    for name in people:
        if language == "en":
            given, family = name.split()
            assert any(e.startswith(given + " ") for e in entities) and any(e.endswith(" " + family) for e in entities)
        else:
            assert any(e[0] == name[0] for e in entities) and any(e[1:] == name[1:] for e in entities)


def test_swapped_in_names_are_absent_from_the_text_and_of_the_use_asked_for(corpus):
    text, language, entities = corpus
    questions = [f"{'谁' if language == 'zh' else 'Who knew'} {name}?" for name in list(entities)[:40]]
    pairs = [{"id": f"p{i}", "question": q} for i, q in enumerate(questions)]
    for use in USES:
        swapped = swap_in_absent(pairs, 30, random.Random(0), language, text.lower(), entities, use)
        assert swapped
        for _, question, check, _, origin in swapped:
            assert name_share(check.name) == use and check.exact_absent and check.name.lower() not in text.lower()
            assert check.name.removeprefix("the ") in question and origin in ("recombined", "real_world")
        assert len({check.name for _, _, check, _, _ in swapped}) == len(swapped)


def test_name_shares_split_every_list_three_ways_and_never_overlap():
    for language in ("en", "zh"):
        for kind in ("person", "place", "org", "thing"):
            shares = [set(real_world_names(kind, language, use)) for use in USES]
            assert all(shares) and not (shares[0] & shares[1] or shares[0] & shares[2] or shares[1] & shares[2])


def test_false_premises_put_a_corpus_entity_into_a_relation_the_corpus_never_states():
    text = ("Ilka Tamsell founded the Lantern Guild in 1402. Saro Keldane built the Brinewheel in 1372. "
            "Orric Velm sailed to Dunmere.")
    entities = {"Ilka Tamsell": "person", "Saro Keldane": "person", "Orric Velm": "person", "Lantern Guild": "org",
                "Brinewheel": "thing", "Dunmere": "place"}
    pairs = [{"id": "p0", "question": "Who founded the Lantern Guild?"},
             {"id": "p1", "question": "What did Saro Keldane build?"}]
    made = false_premises(pairs, 5, random.Random(1), text, entities)
    assert made
    for pair, question, other in made:
        assert other in entities and other in question and question != pair["question"]
    # Orric Velm never built anything in this text; Saro Keldane built only the Brinewheel.
    assert ("What did Saro Keldane build?" not in [q for _, q, _ in made])


def question_logprobs(model_path, questions):
    """Mean log-prob per token of each question under the base model, in its own chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    scores = []
    for question in questions:
        ids = tokenizer(question, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            logits = model(ids).logits[0, :-1].float()
        scores.append(torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None]).mean().item())
    return scores


@pytest.mark.slow
def test_hard_probes_are_not_told_apart_by_the_base_models_question_likelihood(embedded_model):
    """The control the issue asks for: if the base model's likelihood of the question alone separated the
    absent questions from the answerable ones, the probes would measure how odd a name looks, not knowledge.
    Syllable-invented names are the contrast: they do separate."""
    from selfinstruct.corpus import split_sentences
    from selfinstruct.entities import answer_spans, swap_in_invented
    from selfinstruct.gate import auroc
    from selfinstruct.questions import template_question

    text = SAMPLE_EN.read_text(encoding="utf-8")
    entities = corpus_entities(text, "en")
    questions = []
    for s, e in split_sentences(text):
        sentence = text[s:e]
        spans = [sp for sp in answer_spans(sentence, entities, "en") if sp[2] in ("year", "quantity")]
        question = template_question(sentence, *spans[0], "en") if spans else None
        if question and any(name in question for name in entities):
            questions.append(question)
    pairs = [{"id": f"p{i}", "question": q} for i, q in enumerate(questions)]
    hard = swap_in_absent(pairs, 40, random.Random(0), "en", text.lower(), entities, "probe")
    easy = swap_in_invented(pairs, 40, random.Random(0), "en", text.lower(), entities, avoid=set())
    assert len(hard) >= 25 and len(easy) >= 25
    real = question_logprobs(embedded_model, [pair["question"] for pair, *_ in hard])
    swapped = question_logprobs(embedded_model, [question for _, question, *_ in hard])
    invented = question_logprobs(embedded_model, [question for _, question, *_ in easy])
    real_for_easy = question_logprobs(embedded_model, [pair["question"] for pair, *_ in easy])
    hard_auroc, easy_auroc = auroc(real, swapped), auroc(real_for_easy, invented)
    assert hard_auroc < 0.65, (hard_auroc, easy_auroc)
    assert easy_auroc > hard_auroc, (hard_auroc, easy_auroc)


def test_recombined_names_come_in_the_same_order_in_every_process():
    """A resumed run, or a Ray driver, is another process with another hash seed: the names it draws must not
    depend on it."""
    script = ("import hashlib, sys; from selfinstruct.negatives import recombined_names; "
              "from selfinstruct.entities import corpus_entities; "
              f"text = open({str(SAMPLE_EN)!r}, encoding='utf-8').read(); "
              "print(hashlib.sha256(repr(list(recombined_names(corpus_entities(text, 'en'), 'en'))).encode())"
              ".hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed},
                              capture_output=True, text=True, check=True).stdout for seed in ("1", "2")}
    assert len(digests) == 1
