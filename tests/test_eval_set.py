"""The `make eval` yardstick stays honest: the hand-written questions fit their corpus and copy none of it."""

import json
import re
import subprocess
from collections import Counter

from .conftest import REPO

CORPUS = REPO / "corpora" / "eval_isle_of_quennock.txt"
QUESTIONS = CORPUS.with_suffix(".questions.jsonl")


def words(text):
    return re.findall(r"[a-z0-9]+", text.lower())


def test_eval_questions_are_balanced_grounded_and_in_their_own_words():
    text = CORPUS.read_text(encoding="utf-8")
    questions = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines()]
    types = Counter(q["type"] for q in questions)
    assert sum(q["answerable"] for q in questions) >= 60 and types["false_premise"] >= 10
    assert types["recombined"] + types["real_world"] >= 30 and types["cloze"] and types["reversed"]
    corpus_words = words(text)
    five_grams = {tuple(corpus_words[i:i + 5]) for i in range(len(corpus_words) - 4)}
    for q in questions:
        assert isinstance(q["answerable"], bool) and q["question"].strip()
        if q["answerable"]:
            assert q["key"] in text, q  # the key is the corpus's own words; the question is not
        qw = words(q["question"])
        assert not any(tuple(qw[i:i + 5]) in five_grams for i in range(len(qw) - 4)), q["question"]


def dry_run_eval(*assignments):
    """The stage commands `make eval` would run, without running them."""
    out = subprocess.run(["make", "-n", "eval", *assignments], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines() if re.search(r"selfinstruct (generate|tune|probe)", line)]


def test_make_eval_gives_every_stage_the_seed_and_asks_the_questions_only_where_they_exist():
    generate, tune, probe = dry_run_eval()
    assert all(cmd.endswith("--seed 0") for cmd in (generate, tune)) and "--seed 0" in probe
    assert probe.endswith("--questions " + str(QUESTIONS.relative_to(REPO)))
    generate, tune, probe = dry_run_eval("EVAL_CORPUS=corpora/harbour_of_velmoor.txt", "EVAL_SEED=1")
    assert "harbour_of_velmoor.txt" in generate and "--seed 1" in tune and "--seed 1" in probe
    assert "--questions" not in probe  # the sample corpus has no hand-written questions
