"""`selfinstruct generate`: windows -> facts -> questions -> filters -> round trip -> qa.jsonl, resumable.

Answer-aware generation: the pipeline picks each answer (a name, year or count in a sentence of the window),
the model writes questions that ask for it, and only questions that pass every filter and that the model
itself answers correctly from the fact's sentence are kept. A small model is a weak free writer but a usable
question writer when the answer is fixed and the question is started for it (DESIGN.md).

Two halves: QuestionWriter drafts windows with the model and reads no run state, so Ray workers run it too
(generate_ray.py); Pipeline settles each draft in window order against the run (near-duplicates, the refusal
quota, names in use). Over 300 lines because both halves are one story about which questions are kept."""

from __future__ import annotations

import math
import random
import re
import sys
import time
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import filters, prompts, questions
from .backends import Sampling
from .config import UserError
from .corpus import SENTENCE_ENDINGS, Window, split_sentences
from .entities import CLAUSE_WORDS, answer_spans, find_mentions, resolve_pronouns, swap_in_invented
from .generate_run import GenerateRun, open_run
from .negatives import swap_in_absent
from .rewrites import window_texts

# Guided decoding (vLLM): whatever follows the started question must close it with a question mark.
QUESTION_REGEX = {"en": r"[^\n?]{2,200}\?", "zh": r"[^\n?？]{4,80}？"}
PRONOUN_START = ("He ", "She ", "It ", "They ", "This ", "These ", "Those ", "His ", "Her ", "Its ", "Their ",
                 "There ", "他", "她", "它", "这", "那", "其")
# "By 1760 it had been enlarged ...": after a leading time phrase, a pronoun subject the sentence before did not name.
PRONOUN_AFTER_TIME = ("it ", "he ", "she ", "they ", "its ", "his ", "her ", "their ")


@dataclass
class Fact:
    id: str
    window: Window
    sentence: str  # the sentence holding the answer, its leading pronouns replaced by their names
    start: int  # sentence span in the corpus
    end: int
    key: str  # the answer span
    key_start: int  # key span within the sentence
    key_end: int
    kind: str


@dataclass
class Candidate:
    fact: Fact
    phrasing: int
    origin: str  # model | described | active | reversed | clause | predicate | cloze | template | trimmed | reworded
    raw: str
    question: str | None = None
    reason: str | None = None
    reply: str = ""
    detail: dict = field(default_factory=dict)


@dataclass
class WindowDraft:
    """What the model makes of one window before run-wide state (near-duplicates of earlier windows, the
    refusal quota, names already used) decides what is kept."""
    window: Window
    facts: list[Fact]
    candidates: list[Candidate]
    texts: list[dict]  # the window and its restatements
    ungrounded: list[dict]  # restatements the support filter refused
    unasked: list[int] = field(default_factory=list)  # offsets of fact sentences that open with an unresolved pronoun
    generated_tokens: int = 0  # the engine's tokens for the step that drafted this window (first draft only)


@dataclass
class WindowResult:
    window: Window
    pairs: list[dict]
    rejects: list[dict]
    texts: list[dict]  # the window and its restatements
    fact_sentences: list[int]  # corpus offsets of the sentences asked about: the run's fact candidates


def seed_for(*parts) -> int:
    return zlib.crc32(":".join(map(str, parts)).encode())


# (start, end, sentence with its pronouns resolved, answer spans (start, end, kind) in it)
FactSentence = tuple[int, int, str, list[tuple[int, int, str]]]


def pick_facts(window: Window, sentences: list[FactSentence], n: int, seed: int) -> list[Fact]:
    """Answers to ask about, from the window's fact sentences (`fact_sentences`) save those that open with a
    pronoun no name stands for: with `n` 0, every name, number, date or definition of each (a sentence is learnt
    as a fact only through the answers asked of it: "96 miles" in a sentence about the Isle of Quennock is never
    known if only the island is asked for); otherwise up to `n`, one per sentence before any sentence gets a
    second. Either way a name the sentence describes comes first ("the Mariners' Bed, a fund that ..."), then
    they spread over answer kinds."""
    by_sentence = [(start, end, sentence, list(spans)) for start, end, sentence, spans in sentences
                   if not opens_with_pronoun(sentence)]  # a copy of each sentence's spans: they are used up below
    random.Random(seed_for(seed, window.index)).shuffle(by_sentence)
    facts, kinds_used = [], Counter()
    rounds = max((len(spans) for *_, spans in by_sentence), default=0) if n == 0 else 3
    for _ in range(rounds):  # first one answer per sentence, then a second ...
        for start, end, sentence, spans in by_sentence:
            if len(facts) == n > 0 or not spans:
                continue
            # A name the sentence describes first (the sentence is about it), then the kind asked least so far.
            s, e, kind = min(spans, key=lambda sp: (questions.description(sentence, sp[0], sp[1]) is None
                                                    or sp[2] not in questions.NAME_KINDS, kinds_used[sp[2]]))
            spans.remove((s, e, kind))
            kinds_used[kind] += 1
            facts.append(Fact(f"w{window.index:04d}-f{len(facts)}", window, sentence, start, end,
                              sentence[s:e], s, e, kind))
    return facts


def fact_sentences(window: Window, seen_until: int, entities: dict, language: str) -> list[FactSentence]:
    """The window's fact candidates: (start, end, sentence, answer spans) of each sentence that states a name,
    number, date or definition, its leading pronouns first replaced by the names they plainly stand for
    (resolve_pronouns). Sentences wholly inside the previous window's overlap belong to that window's pool and
    are skipped here, as are headings and sentences too short to hold a fact. One that still opens with a pronoun
    is a candidate all the same (the run's coverage counts it), though no question is asked of it."""
    found = []
    spans = split_sentences(window.text, window.start)
    sentences = resolve_pronouns([window.text[s - window.start:e - window.start] for s, e in spans], entities,
                                 language)
    for (start, end), sentence in zip(spans, sentences, strict=True):
        if end <= seen_until or not sentence.endswith(SENTENCE_ENDINGS) or len(filters.tokens(sentence)) < 6:
            continue
        if answers := answer_spans(sentence, entities, language):
            found.append((start, end, sentence, answers))
    return found


def opens_with_pronoun(sentence: str) -> bool:
    """Its subject is a pronoun, so a question made from it asks about nothing a person can name."""
    time = questions.TIME_PHRASE.match(sentence)
    return sentence.startswith(PRONOUN_START) or bool(time) and sentence[time.end():].startswith(PRONOUN_AFTER_TIME)


class QuestionWriter:
    """The model's share of a window: its facts, questions in several shapes, the filters, the round trip and
    the restatements. It reads no run state, so it runs wherever an engine is: in this process, or in a Ray
    worker (generate_ray.py)."""

    def __init__(self, generator, config, language: str, entities: dict):
        self.generator, self.config, self.language, self.entities = generator, config, language, entities

    def draft(self, windows: list[tuple[Window, int]]) -> list[WindowDraft]:
        """Windows, each with the corpus offset up to which the previous window already asked, drafted in
        one engine pass."""
        tokens_before = self.generator.generated_tokens
        sentences = {w.index: fact_sentences(w, seen_until, self.entities, self.language) for w, seen_until in windows}
        facts = {w.index: pick_facts(w, sentences[w.index], self.config.questions_per_window, self.config.seed)
                 for w, _ in windows}
        unasked = {i: [start for start, _, sentence, _ in found if opens_with_pronoun(sentence)]
                   for i, found in sentences.items()}
        candidates = self.write_questions([f for fs in facts.values() for f in fs])
        for c in candidates:
            c.reason = c.reason or filters.check_question(c.question, c.fact.key, c.fact.sentence, c.fact.window.text)
            if not c.reason and c.origin == "model":
                c.reason = written_question_fault(c.question, c.fact.sentence, c.fact.key, c.fact.kind, self.entities)
        # Template and cloze questions are the fact's own sentence reshaped: only the model's need checking.
        self.roundtrip([c for c in candidates if not c.reason and c.origin == "model"])
        if self.language == "en":
            candidates += derived_candidates(candidates)
        drafts = []
        for w, _ in windows:
            texts, ungrounded = window_texts(w, self.entities, self.config.rewrites, self.config.min_support,
                                             self.config.seed, self.language)
            drafts.append(WindowDraft(w, facts[w.index], [c for c in candidates if c.fact.window.index == w.index],
                                      texts, ungrounded, unasked[w.index]))
        if drafts:
            drafts[0].generated_tokens = self.generator.generated_tokens - tokens_before
        return drafts

    def write_questions(self, facts: list[Fact]) -> list[Candidate]:
        """Model candidates: each phrasing has its own started question, one greedy sample and the rest
        sampled. Template candidates (the sentence with the answer swapped for a question word, and a cloze
        that stops where the answer starts) are pooled in too; the same filters judge all, and `origin`
        records which wrote each kept question."""
        cfg, tok = self.config, self.generator.tokenizer
        jobs, candidates, greedy_asked = [], [], set()
        for fact in facts:
            # The model writes from one started question per phrasing beyond four, three at most (all of its kind's
            # stems at the default 7); the sentence's own shapes (described, active, reversed, clause, cloze,
            # trimmed, reworded, template) fill the rest.
            for p in range(min(max(cfg.phrasings - 4, 1), 3)):
                stem = prompts.stems(fact.kind, self.language, fact.key, fact.sentence)[p % 3]
                prompt = prompts.question_prompt(tok, fact.sentence, fact.key, stem, self.language)
                for c in range(cfg.candidates):
                    if c == 0 and (prompt, stem) in greedy_asked:
                        continue  # same stem twice (Chinese has none): greedy would write the same question
                    greedy_asked.add((prompt, stem))
                    jobs.append((Candidate(fact, p, "model", ""), prompt, stem,
                                 self.sampling(c, fact.id, p, c)))
            for origin, question in questions.template_questions(fact.sentence, fact.key_start, fact.key_end,
                                                                 fact.kind, self.language).items():
                if question:  # a shape the sentence does not have is no reject (it was logged as unparseable)
                    candidates.append(Candidate(fact, 0, origin, question, question))
        self.generate_and_parse(jobs)
        # A fact the model wrote nothing parseable for gets one retry, every job sampled with a fresh seed.
        failed = {c.fact.id for c, *_ in jobs} - {c.fact.id for c, *_ in jobs if c.question}
        retry = [(Candidate(c.fact, c.phrasing, "model", ""), prompt, stem,
                  self.sampling(1, c.fact.id, c.phrasing, "retry", j))
                 for j, (c, prompt, stem, _) in enumerate(jobs) if c.fact.id in failed]
        self.generate_and_parse(retry)
        for c, *_ in jobs + retry:
            c.reason = None if c.question else "unparseable"
        return [c for c, *_ in jobs + retry] + candidates

    def sampling(self, index: int, *seed_parts) -> Sampling:
        cfg = self.config
        temperature = 0.0 if index == 0 else cfg.temperature
        return Sampling(max_new_tokens=cfg.max_new_tokens, temperature=temperature, top_p=cfg.top_p,
                        seed=seed_for(cfg.seed, *seed_parts), stop=("\n",),
                        regex=QUESTION_REGEX[self.language])

    def generate_and_parse(self, jobs) -> None:
        if not jobs:
            return
        texts = self.generator.generate([prompt for _, prompt, _, _ in jobs], [s for *_, s in jobs])
        for (candidate, _, stem, _), text in zip(jobs, texts, strict=True):
            candidate.raw = stem + text
            candidate.question = prompts.parse_question(candidate.raw)

    def roundtrip(self, candidates: list[Candidate]) -> None:
        """The model answers each question from the fact's sentence (or its whole window, with
        --roundtrip-context window); its answer must hold the fact's key. Measured with the embedded model on
        ten good questions: 9 answered right from the sentence, 4 from the whole window."""
        if not self.config.roundtrip or not candidates:
            return
        sentence = self.config.roundtrip_context == "sentence"
        texts = read_back(self.generator, [c.fact.sentence if sentence else c.fact.window.text for c in candidates],
                          [c.question for c in candidates], self.language, self.config.max_new_tokens,
                          self.config.seed)
        for c, reply in zip(candidates, texts, strict=True):
            c.reply = reply.strip()
            if not answers_with_key(c.reply, c.fact.key, c.question, self.entities):
                c.reason = "roundtrip_disagrees"


def read_back(generator, contexts: list[str], questions: list[str], language: str, max_new_tokens: int,
              seed: int) -> list[str]:
    """The model's greedy answer to each question with its context before it: the round trip that a written
    question passes when the answer holds its key."""
    if not questions:
        return []
    return generator.generate([prompts.roundtrip_prompt(generator.tokenizer, context, question, language)
                               for context, question in zip(contexts, questions, strict=True)],
                              Sampling(max_new_tokens=max_new_tokens, seed=seed, stop=("\n",)))


def written_question_fault(question: str, sentence: str, key: str, kind: str, entities: dict[str, str]) -> str | None:
    """Why a question the model wrote does not ask for its key alone, or None. Generate rejects its own with
    this reason; probe keeps a new phrasing only if it has none. Templates and clozes are the sentence reshaped
    and need none of these."""
    if filters.says_this_of_nothing(question):
        return "vague"  # "Which person held this role in 1716?"
    if not filters.asks_one_fact(question, sentence):
        return "not_one_fact"  # "Who was the first Keeper, and where is the Keeper now?"
    if not one_answer(question, sentence, key, kind, entities):
        return "two_answers"  # "Who was accused of drying tessaline?" keyed to the one who accused
    if asks_another_clause(question, sentence, key, kind, entities):
        return "other_clause"
    if points_elsewhere(question, sentence, key, kind, entities):
        return "points_elsewhere"  # "When did the Greylag Maid bring the first settlers?" keyed 1744
    if reverses_roles(question, sentence, entities):
        return "askew"  # "In which year was Lisbet Orrow designed?" of "Lisbet Orrow designed the smoking-rack"
    return None


def answers_with_key(reply: str, key: str, question: str, entities: dict[str, str]) -> bool:
    """The round trip's verdict: the reply's first sentence gives the key as its answer. Holding it is not
    enough: "Ysolde Saldane, the daughter of Emeric Saldane." names another person first, so the question
    ("Who discovered ...?") is not about the key Emeric Saldane; "It opened in 1760, not 1774." denies it."""
    first = filters.first_sentence(reply)
    given = asked_unit_aside(key, question)
    if not filters.mentions(first, given) or _denies(first, given):
        return False
    kind = entities.get(key)
    if kind not in RIVAL_KINDS:
        return True
    rivals = [first[s:e] for s, e, k in find_mentions(first, entities)
              if k == kind and not filters.mentions(question, first[s:e])]  # what the question names is no answer
    return not rivals or filters.mentions(rivals[0], key) or filters.mentions(key, rivals[0])


def asked_unit_aside(key: str, question: str) -> str:
    """What a reply must give of the key: an amount's number alone when the question names its unit. The round
    trip's reader answers "How many people died in the flood of 1184?" with "The answer is 600.", and the unit
    it leaves out is the one it was asked for; wanting "600 people" rejected 62 such questions of the sample
    corpus's 681 round-trip rejects, and the quantity facts they asked kept one or two phrasings."""
    number, _, unit = key.partition(" ")
    if unit and re.fullmatch(r"\d[\d,.]*", number) and filters.mentions(question, unit):
        return number
    return key


# Not places: one sits in another ("inside the Tide Tower on the Old Stair"), and "where" has both for answers.
RIVAL_KINDS = ("person", "org", "thing")


def _denies(sentence: str, key: str) -> bool:
    """The key's first mention is denied ("in 1760, not 1774"; "in 1788, not 1788" still gives it)."""
    words, key_words = " ".join(filters.tokens(sentence)), " ".join(filters.tokens(key))
    first = re.search(rf"(?:\b(?:not|never) (?:(?:in|on|at|the|a|an) )?)?\b{re.escape(key_words)}\b", words)
    return bool(key_words and first) and first.group().startswith(("not ", "never "))


# Where a clause ends: the words of a relation tell apart two names in different clauses ("Edda Marrow founded
# the archive that Tobias Quill rebuilt"), not two in one. The comma of "9,000" ends none.
CLAUSE_END = re.compile(r",(?!\d{3})|[;:，；：]|" + CLAUSE_WORDS)
YEAR = re.compile(r"(?<![\d,.])(?:1\d|20)\d{2}(?![\d,.]?\d)")
# What else answers a question of each kind: "where" is answered by a building or a hall as well as a town.
ANSWER_KINDS = {"person": ("person",), "place": ("place", "org", "thing")}


def one_answer(question: str, sentence: str, key: str, kind: str, entities: dict[str, str]) -> bool:
    """No other name or number of the key's kind shares a clause with the key, or with a number the question
    names, unless the question names it. Of "The Harbour Archive stands in Twinwater next to the Hall of Oars
    ...", "Which place holds about 9,000 books?" has three answers, and a tuned model that says the Archive is
    not wrong; the round trip's reader, given the sentence, still says Twinwater. "Where does the Harbour Archive
    stand?" names the Archive and keeps the Hall: two answers still."""
    if _counts_its_unit(question, key, kind):
        return True  # "How many beds ...?" of "40 beds and 12 nurses" names what it counts
    clauses = CLAUSE_END.split(sentence)
    keyed = [c for c in clauses if filters.mentions(c, key)]
    # A number the question names from another clause points there: "How many kinds of plant were there in
    # 1731?" of "In 1731 the Keeper listed 212 kinds ...; by 1785 the list had grown to 640" asks for 212.
    elsewhere = filters.numbers(question) - {n for c in keyed for n in filters.numbers(c)}
    pointed = [c for c in clauses if c not in keyed and elsewhere & filters.numbers(c)]
    return not _rivals(keyed + pointed, question, key, kind, entities)


def points_elsewhere(question: str, sentence: str, key: str, kind: str, entities: dict[str, str]) -> bool:
    """The question shares more words with another clause of its sentence than with the key's, and that clause
    names another answer of the key's kind: "Where did the college meet?" of "The College meets in the Slate
    Hall, a long building on the market square of Harrowmede" asks for the Slate Hall as much as Harrowmede; "In
    which year did the Herbarium of Tobias Varrance begin its work?" of "The Herbarium was begun in 1741 by
    Tobias Varrance ..., and by 1790 it held more than 9,000 sheets" asks for 1741, not 1790. `one_answer` reads
    the key's clause and one whose number the question names, not where its other words point. So does a
    question whose asked-for noun belongs to another name of the sentence: "Which guild owned four furnaces?"
    keyed to anything but the guild, "What is the name of the narrows?" keyed Brinewheel."""
    if _another_name_holds_its_noun(question, sentence, key, kind, entities):
        return True
    if _counts_its_unit(question, key, kind):
        return False
    asked = filters.word_stems(question) - filters.word_stems(key)
    shared = [(clause, len(asked & filters.word_stems(clause))) for clause in CLAUSE_END.split(sentence)]
    keyed = max((n for clause, n in shared if filters.mentions(clause, key)), default=0)
    pointed = [clause for clause, n in shared if n > keyed]
    if kind == "year" and not keyed and any(YEAR.findall(c) and filters.numbers(c) & filters.numbers(question)
                                            for c in pointed):
        # "In what year were the first settlers arriving ... 1709?" keyed 1744 states the year it asks for. A fair
        # question whose only word of the key's clause is an irregular form ("sink" of "sank") is kept out too.
        return True
    return bool(_rivals(pointed, question, key, kind, entities))


# The word after "which", "what" or "the name of the" ("Which guild ...?"), when it is no name's ("Which Tolvey
# ship ...?" is not asked for by "Tolvey").
ASKED_NOUN = re.compile(r"\b(?:[Ww]hich|[Ww]hat|name\s+of\s+the)\s+([a-z]+)\b")


def _another_name_holds_its_noun(question: str, sentence: str, key: str, kind: str, entities: dict[str, str]) -> bool:
    """The noun the question asks for is a word of another name of the sentence, one the question does not
    state: "What is the name of the narrows?" asks for the Narrows of Corrow. Only a person is another answer
    to a person's question: "Which warden held the office?" asks for a man, not for the Warden of the Isle."""
    nouns = [filters.stem(m.group(1)) for m in ASKED_NOUN.finditer(question) if m.group(1) not in filters.STOPWORDS]
    if not nouns or nouns[0] in filters.word_stems(key):
        return False
    return any(nouns[0] in filters.word_stems(name) and name not in question  # "the warden" states no Warden
               and (kind != "person" or entities.get(name) == "person")
               for name in other_names(sentence, key, entities))


def reverses_roles(question: str, sentence: str, entities: dict[str, str]) -> bool:
    """The question makes a person of its sentence the object of the verb the person does there: "In which year
    was Lisbet Orrow designed?" of "Lisbet Orrow designed the smoking-rack in 1741". The round trip passes it,
    since its reader finds the one year of the sentence whatever the question asks."""
    people = {sentence[s:e] for s, e, k in find_mentions(sentence, entities) if k == "person"}
    for person in people:
        done = re.search(rf"\b(?:was|were|is|are)\s+{re.escape(person)}\s+([a-z]+ed)\b", question)
        if done and re.search(rf"\b{re.escape(person)}\s+{done.group(1)}\b", sentence):
            return True
    return False


def _counts_its_unit(question: str, key: str, kind: str) -> bool:
    return (kind == "quantity" and bool(filters.COUNTED.search(question)) and filters.counts_its_key(question, key)
            and not filters.tokens(key)[-1].isdigit())


def _rivals(clauses: list[str], question: str, key: str, kind: str, entities: dict[str, str]) -> list[str]:
    """The other answers of the key's kind the clauses name, less those the question names itself."""
    asked = set(filters.tokens(question))
    return [rival for clause in clauses for rival in _answers_of_kind(clause, kind, entities)
            if not (filters.mentions(rival, key) or filters.mentions(key, rival)
                    or asked & set(filters.content_tokens(rival)))]


def _answers_of_kind(clause: str, kind: str, entities: dict[str, str]) -> list[str]:
    years = YEAR.findall(clause)
    if kind == "year":
        return years
    if kind == "quantity":  # "one" is more often "one of the" than a count
        return sorted(filters.numbers(clause) - set(years) - {"1"})
    return [clause[s:e] for s, e, k in find_mentions(clause, entities) if k in ANSWER_KINDS.get(kind, ())]


# Where one of a sentence's coordinated clauses ends and the next, with its own subject, begins.
COORDINATED = re.compile(r";|；|,\s+(?:and|but|while|whereas)\s+|，(?:而|并|但)")
# A word that carries a name of one clause into the other ("and under him the Infirmary began ...", "and more
# than 70 ships were wrecked there").
CARRIER = re.compile(r"(?i)\b(?:it|its|he|his|him|she|her|they|their|them|there)\b|[它他她其]")


def asks_another_clause(question: str, sentence: str, key: str, kind: str, entities: dict[str, str]) -> bool:
    """The question is about a part of its sentence that does not state the key: see `_names_another_clause`
    and `_leaves_out_the_relation`. A question that carries the other clause along (a template, a cloze) says
    what it asks."""
    return (kind == "person" and _leaves_out_the_relation(question, sentence, key)
            or _names_another_clause(question, sentence, key, entities))


def _names_another_clause(question: str, sentence: str, key: str, entities: dict[str, str]) -> bool:
    """It names only things of a coordinated clause other than the key's, and no pronoun ties the two: "In which
    year did the Windrow Ward open?" keyed 1774 of "Ysolde Saldane founded the Windrow Ward in 1760 ..., and the
    Hollin Ward, opened in 1774, ..."."""
    clauses = COORDINATED.split(sentence)
    keyed = [c for c in clauses if filters.mentions(c, key)]
    if len(keyed) != 1 or len(COORDINATED.split(question)) > 1:
        return False
    asked = [name for name in other_names(sentence, key, entities) if filters.mentions(question, name)]
    if not asked or any(filters.mentions(keyed[0], n) for n in asked):
        return False
    theirs = [c for c in clauses if any(filters.mentions(c, n) for n in asked)]
    return not any(CARRIER.search(c) for c in keyed + theirs)


def other_names(sentence: str, key: str, entities: dict[str, str]) -> list[str]:
    """The names and numbers in a sentence besides its key (and besides a name that holds it or that it holds)."""
    names = [sentence[s:e] for s, e, _ in find_mentions(sentence, entities)]
    return ([name for name in names if not filters.mentions(key, name) and not filters.mentions(name, key)]
            + sorted(filters.numbers(sentence) - filters.numbers(key)))


def _leaves_out_the_relation(question: str, sentence: str, key: str) -> bool:
    """The sentence names the key only as another person's relative, and the question asks without the relation:
    "Who found that marrowbell root ...?" keyed Emeric Saldane of "Ysolde Saldane, the daughter of Emeric
    Saldane, found that ..." asks for the daughter."""
    relative = re.search(rf"(?:^|,)\s*(?:the|a|an|his|her)\s+((?:\w+\s+){{0,2}}?\w+)\s+of\s+{re.escape(key)}", sentence)
    return bool(relative) and not filters.word_stems(relative.group(1)) & filters.word_stems(question)


class Pipeline:
    """The run-wide decisions on each drafted window, in window order: near-duplicates of questions kept
    earlier, the refusal quota and the names it has used. Only the driver runs this; the run state it changes
    is GenerateRun's."""

    def __init__(self, run: GenerateRun):
        self.run, self.config = run, run.config
        self.language, self.tag = run.corpus.language, run.tag
        self.system = run.manifest.system_prompt  # written once, by GenerateRun.new_manifest

    def settle(self, draft: WindowDraft) -> WindowResult:
        w = draft.window
        accepted = self.accept(draft.facts, draft.candidates)
        self.run.count(accepted)  # the refusal quota follows the answerable count so far
        refused = self.refusals(w, accepted)
        self.run.count(refused)
        return WindowResult(w, accepted + refused,
                            [self.reject_record(c) for c in draft.candidates if c.reason] + draft.ungrounded,
                            draft.texts, sorted({f.start for f in draft.facts} | set(draft.unasked)))

    def accept(self, facts: list[Fact], candidates: list[Candidate]) -> list[dict]:
        records = []
        for fact in facts:
            # The key, then the clause of the fact's sentence that states it: grounded by construction (the
            # check guards that), and what a person wants first (whole-sentence answers buried the key). The
            # clause alone with --answer-form clause.
            answer = questions.key_first_answer(fact.key, fact.kind, fact.sentence, fact.key_start, fact.key_end,
                                                self.language, self.config.answer_form)
            problem, score = filters.check_answer(answer, fact.window.text, self.config.min_support)
            kept = 0
            for c in interleave_origins([c for c in candidates if c.fact is fact and not c.reason]):
                twin = self.run.duplicates.find(c.question)
                if problem or twin or kept == self.config.phrasings:
                    c.reason = problem or ("duplicate" if twin else "surplus_phrasing")
                    c.detail = {"duplicate_of": twin} if twin else {}
                    continue
                self.run.duplicates.add(c.question)
                records.append(self.record(f"{fact.id}-q{kept}", fact.window, c.question, answer, True, score,
                                           fact_id=fact.id, evidence=[fact.start, fact.end], kind=fact.kind,
                                           key=fact.key, origin=c.origin, roundtrip=c.reply))
                kept += 1
        return records

    def refusals(self, window: Window, accepted: list[dict]) -> list[dict]:
        """Pairs whose question names something absent from the corpus and whose answer is the refusal: a real
        question of this window with its entity swapped. Two in three swap in a name that looks like the
        corpus (recombined from its own name parts) or a real-world one, from the training share of those
        names (probe and the gate's calibration draw from other shares); the rest, and any those names run short
        of (each is used once), a syllable-invented name."""
        want = round(self.config.unanswerable_ratio * self.run.answerable) - self.run.refused
        rng = random.Random(seed_for(self.config.seed, "refusal", window.index))
        corpus_lower, entities = self.run.corpus_lower, self.run.entities
        hard = swap_in_absent(accepted, math.ceil(2 * want / 3), rng, self.language, corpus_lower, entities,
                              "train", avoid=frozenset(self.run.used_names))
        self.run.used_names.update(check.name for _, _, check, _, _ in hard)
        easy = swap_in_invented(accepted, want - len(hard), rng, self.language, corpus_lower, entities,
                                avoid=self.run.used_names)
        swapped = hard + [(source, question, name, replaced, "invented") for source, question, name, replaced in easy]
        answer = prompts.refusal(self.tag, self.language)
        return [self.record(f"w{window.index:04d}-r{i}", window, question, answer, False, None, entity=name.name,
                            replaces=replaced, derived_from=source["id"], origin=origin,
                            absence={"exact_absent": name.exact_absent, "closest": name.closest,
                                     "similarity": name.similarity})
                for i, (source, question, name, replaced, origin) in enumerate(swapped)]

    def record(self, id_: str, window: Window, question: str, answer: str, answerable: bool, score: float | None,
               fact_id: str | None = None, **extra) -> dict:
        messages = prompts.chat_messages(self.system, self.tag, question, answer)
        return {"id": id_, "source": self.tag, "window": window.index, "start": window.start, "end": window.end,
                "fact_id": fact_id or id_, "question": question, "answer": answer, "answerable": answerable,
                "support": score, **extra, "text": prompts.render_llama2(messages), "messages": messages}

    def reject_record(self, c: Candidate) -> dict:
        return {"window": c.fact.window.index, "fact_id": c.fact.id, "key": c.fact.key, "phrasing": c.phrasing,
                "origin": c.origin, "reason": c.reason, "question": c.question, "raw": c.raw,
                "roundtrip": c.reply or None, **c.detail}


def derived_candidates(candidates: list[Candidate]) -> list[Candidate]:
    """Two more phrasings per fact, made from its accepted questions when they are new to it: `trimmed`, its
    first question (the model's, the clause's, then the template's) without the qualifiers people leave out
    (questions.trimmed_question), and `reworded`, the first of those or the trimmed one with a word swapped for
    a synonym (questions.reworded_question)."""
    asked = {(c.fact.id, c.question) for c in candidates}
    accepted = [c for c in candidates if not c.reason]  # both makers pass over a cloze: it keeps its own words
    derived: list[Candidate] = []
    for origin, make in (("trimmed", lambda c: questions.trimmed_question(c.question, c.fact.key)),
                         ("reworded", lambda c: questions.reworded_question(c.question))):
        done = set()
        for c in derived + accepted:  # a trimmed question is reworded first: it is the furthest from the sentence
            question = None if c.fact.id in done else make(c)
            if question and (c.fact.id, question) not in asked:
                derived.append(Candidate(c.fact, 0, origin, question, question, reply=c.reply))
                asked.add((c.fact.id, question))
                done.add(c.fact.id)
    return derived


# Which shape a fact keeps first when it has more than --phrasings: the whole sentence with a hole reads least
# like what people ask, so it comes last.
ORIGIN_PREFERENCE = ("model", "described", "active", "reversed", "clause", "predicate", "cloze", "trimmed",
                     "reworded", "template")


def interleave_origins(candidates: list[Candidate]) -> list[Candidate]:
    """First one question of each origin (in ORIGIN_PREFERENCE order), then second ones: the phrasings kept for
    a fact differ in shape, not only in wording."""
    rank = Counter()
    ranked = []
    for c in candidates:
        ranked.append((rank[c.origin], ORIGIN_PREFERENCE.index(c.origin), c))
        rank[c.origin] += 1
    return [c for *_, c in sorted(ranked, key=lambda r: r[:2])]


def run(config, generator=None) -> int:
    """Generate pairs for the run folder; `generator` replaces the configured engine (benchmarks, tests)."""
    started = time.time()
    with open_run(config) as run_state:
        todo = run_state.todo()
        if todo and not run_state.done and not any(
                pick_facts(w, fact_sentences(w, run_state.seen_until(w), run_state.entities,
                                             run_state.corpus.language), 0, config.seed)
                for w in run_state.windows):
            raise UserError(f"{config.corpus} has no sentence that states a name, number or date to ask about "
                            f"({len(run_state.corpus.text.split())} words): give it a corpus of whole sentences")
        if todo:
            with drafts_of(config, run_state, todo, generator) as drafts:
                pipeline = Pipeline(run_state)
                with run_state.progress(len(todo)) as advance:
                    for draft in drafts:
                        run_state.commit(pipeline.settle(draft))
                        advance(draft.generated_tokens)
        summary = run_state.finish(time.time() - started)
    print(format_summary(summary), file=sys.stderr)
    if summary["windows_done"] and not summary["answerable"]:
        reasons = ", ".join(f"{k} {v}" for k, v in summary["rejects_by_reason"].items())
        see = f"; see {run_state.rejects_path}" if run_state.rejects_path.exists() else ""
        raise UserError(f"the model wrote nothing usable: no pair passed the filters ({reasons or 'no output'})"
                        f"{see}")
    if summary["answerable"] and not summary["origins"].get("model"):
        print("selfinstruct: warning: the model wrote no usable question; every pair comes from the sentence "
              f"templates (see {run_state.rejects_path} for what it wrote)", file=sys.stderr)
    return 0


@contextmanager
def drafts_of(config, run_state: GenerateRun, todo: list[Window], generator=None):
    """The drafted windows in window order: from Ray workers with --ray, else from one engine here,
    `windows_per_step` windows a pass."""
    if config.ray:
        from .generate_ray import ray_drafts

        with ray_drafts(config, run_state, todo) as drafts:
            yield drafts
        return
    from .backends import load_generator

    generator = generator or load_generator(run_state.model.path, config.backend, config.quantization,
                                            config.batch_size, config.seed)
    run_state.record_engine(generator.record)
    writer = QuestionWriter(generator, config, run_state.corpus.language, run_state.entities)
    step = config.windows_per_step
    yield (draft for i in range(0, len(todo), step)
           for draft in writer.draft([(w, run_state.seen_until(w)) for w in todo[i:i + step]]))


def format_summary(s: dict) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["rejects_by_reason"].items(), key=lambda kv: -kv[1]))
    return (f"generate: {s['windows_done']}/{s['windows_total']} windows, {s['pairs']} pairs "
            f"({s['answerable']} answerable from {s['facts']} facts, {s['unanswerable']} refusals), "
            f"{s['rejects']} rejects ({reasons or 'none'}), facts asked about {s['facts_covered']} of "
            f"{s['fact_candidates']} fact sentences ({s['facts_per_1000_words']} per 1,000 words), windows with pairs "
            f"{s['coverage']:.0%}, "
            f"{s['wall_seconds']:.0f} s this run -> {s['run_dir']}")
