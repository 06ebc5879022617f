"""Questions the corpus cannot answer that look like the ones it can: names recombined from the corpus's own
name parts, real-world names it never mentions, and false premises (a corpus entity in a relation the corpus
does not state). Syllable-invented names are easy to spot from their oddness alone (the base model's question
likelihood told them apart at AUROC 0.82-0.94), so a refusal habit or a gate learned on them does not carry over
to what people ask. generate trains refusals on these, tune calibrates the gate on them, probe measures on them;
each use draws from its own share of the names (`name_share`), so none of the three sees another's names."""

from __future__ import annotations

import random
import re
import zlib

from .entities import EN_KIND_WORDS, ZH_SUFFIXES, Absence, check_absent, first_mentions, swap_entity
from .filters import content_tokens

USES = ("train", "calibrate", "probe")
REAL_WORLD = {
    "en": {
        "person": """Marie Curie|Isaac Newton|Robert Boyle|Charles Darwin|Ada Lovelace|Galileo Galilei|Marco Polo|
            Nikola Tesla|Jane Austen|Napoleon Bonaparte|Antoine Lavoisier|Albert Einstein|Leonardo da Vinci|
            William Shakespeare|Edward Jenner|Robert Koch|Gregor Mendel|James Watt|Michael Faraday|Johannes Kepler|
            Alexander Fleming|Hippocrates|Ferdinand Magellan|Catherine the Great""",
        "place": """Paris|Lisbon|Venice|the Thames|the Danube|Mount Everest|Cairo|Kyoto|Dublin|Madagascar|Iceland|
            the Sahara|Vienna|Buenos Aires|the Rhine|Crete|Istanbul|Bombay|Tasmania|the Alps|Amsterdam|Naples|Oslo|
            the Nile""",
        "org": """the Royal Mint|the Royal Society|the East India Company|UNESCO|the Vatican|the Hanseatic League|
            the Knights Templar|Oxford University|the Bank of England|the World Health Organization|Harvard University|
            the Order of Malta|the Salvation Army|the Jesuits|the Sorbonne|NASA""",
        "thing": """the Eiffel Tower|the printing press|the steam engine|the Rosetta Stone|the Magna Carta|penicillin|
            the telescope|the Titanic|the telegraph|the Great Wall|the microscope|the Mona Lisa|the spinning jenny|
            the Suez Canal|the compass|the Panama Canal""",
    },
    "zh": {
        "person": "孔子|李白|杜甫|苏轼|张衡|华佗|李时珍|郑和|诸葛亮|王羲之|司马迁|蔡伦|孙思邈|祖冲之|沈括|毕昇",
        "place": "北京|上海|长江|黄河|泰山|西湖|洞庭湖|敦煌|杭州|苏州|桂林|峨眉山|洛阳|西安|扬州|黄山",
        "org": "翰林院|国子监|少林寺|同仁堂|江南制造局|京师大学堂|太医院|东林书院",
        "thing": "指南针|活字印刷|地动仪|都江堰|赵州桥|四库全书|清明上河图|故宫|长城|大运河|本草纲目|永乐大典",
    },
}


# Written before the hand-written eval questions (corpora/eval_*.questions.jsonl); the names both happened to
# use were then taken out of this list, so no training step sees a name those questions ask about.


def name_share(name: str) -> str:
    """Which use a name belongs to: a stable hash split, so no run, seed or order change moves a name across."""
    return USES[zlib.crc32(name.lower().encode()) % len(USES)]


def real_world_names(kind: str, language: str, use: str) -> list[str]:
    names = [n.strip() for n in REAL_WORLD[language].get(kind, "").split("|")]
    return [n for n in names if n and name_share(n) == use]


def recombined_names(entities: dict[str, str], language: str) -> dict[str, str]:
    """Names built from parts of the corpus's own names, by kind: one person's given name with another's
    family name, one place's stem with another's marker ("Calvane Bridge" from "River Calvane" and "Ottering
    Bridge"). They sound like the corpus, which is the point."""
    return _zh_recombined(entities) if language == "zh" else _en_recombined(entities)


def _en_recombined(entities: dict[str, str]) -> dict[str, str]:
    made: dict[str, str] = {}
    people = [n.split() for n, k in entities.items()
              if k == "person" and len(n.split()) == 2 and not re.search(r"['’]", n)]
    for given, _ in people:
        for _, family in people:
            made[f"{given} {family}"] = "person"
    patterns: dict[str, set[str]] = {}
    stems: dict[str, set[str]] = {}
    markers = {w for words in EN_KIND_WORDS.values() for w in words}
    for name, kind in entities.items():
        words = name.split()
        stem = [w for w in words if w not in markers and w not in ("of", "the", "de", "van")]
        # One stem beside its markers: "Ottering Bridge", "Isle of Seim"; and a capitalised one: "Vaunt depth-reel"
        # would lend "depth-reel Lamp", whose capitals show only a known "Lamp", so no name check sees it.
        if len(words) < 2 or len(stem) != 1 or not stem[0][0].isupper():
            continue
        patterns.setdefault(kind, set()).add(re.sub(rf"\b{re.escape(stem[0])}\b", "{}", name, count=1))
        stems.setdefault(kind, set()).add(stem[0])
    for kind, kind_patterns in patterns.items():
        for pattern in sorted(kind_patterns):  # sorted: a set's order changes with each process's hash seed
            for stem in sorted(stems[kind]):
                made[pattern.format(stem)] = kind
    return {n: k for n, k in made.items() if n not in entities}


def _zh_recombined(entities: dict[str, str]) -> dict[str, str]:
    made: dict[str, str] = {}
    people = [n for n, k in entities.items() if k == "person" and len(n) == 3]
    for a in people:
        for b in people:
            made[a[0] + b[1:]] = "person"
    for kind, suffixes in ZH_SUFFIXES.items():
        named = [(n[:-len(s)], s) for n, k in entities.items() if k == kind for s in suffixes
                 if n.endswith(s) and len(n) > len(s)]
        for stem, _ in named:
            for _, suffix in named:
                made[stem + suffix] = kind
    return {n: k for n, k in made.items() if n not in entities}


def absent_names(kind: str, entities: dict[str, str], corpus_lower: str, language: str, use: str,
                 rng: random.Random) -> list[tuple[str, str]]:
    """(name, origin) of one kind for one use, recombined and real-world mixed, each absent from the corpus
    text (exactly: a recombined name is meant to resemble a corpus name, so no fuzzy check), shuffled."""
    recombined = [n for n, k in recombined_names(entities, language).items() if k == kind]
    names = [(n, "recombined") for n in recombined] + [(n, "real_world") for n in
                                                       real_world_names(kind, language, use)]
    names = [(n, o) for n, o in names if name_share(n) == use and n.lower() not in corpus_lower]
    rng.shuffle(names)
    return names


def swap_in_absent(pairs: list[dict], n: int, rng: random.Random, language: str, corpus_lower: str,
                   entities: dict[str, str], use: str, avoid: frozenset[str] = frozenset()
                   ) -> list[tuple[dict, str, Absence, str, str]]:
    """Up to `n` of the pairs' questions with their first named entity swapped for a recombined or real-world
    name of the same kind: (pair, question, absence check, replaced text, origin). Names in `avoid` (already
    used) are skipped, and each name is used once."""
    pools = {}
    used = set(avoid)
    sources = first_mentions(pairs, entities, rng)
    out = []
    for pair, (start, end, kind) in sources:
        if len(out) >= n:
            break
        pool = pools.setdefault(kind, absent_names(kind, entities, corpus_lower, language, use, rng))
        while pool and pool[-1][0] in used:
            pool.pop()
        if not pool:
            continue
        name, origin = pool.pop()
        used.add(name)
        question = pair["question"]
        out.append((pair, swap_entity(question, start, end, name), check_absent(name, corpus_lower, entities),
                    question[start:end], origin))
    return out


def false_premises(pairs: list[dict], n: int, rng: random.Random, corpus: str, entities: dict[str, str]
                   ) -> list[tuple[dict, str, str]]:
    """Up to `n` questions that put another corpus entity of the same kind where a real question had its
    entity, kept only where no sentence of the corpus names that entity together with the question's other
    content words (then the corpus may well answer it). Returns (pair, question, the entity put in)."""
    from .corpus import split_sentences

    sentences = [corpus[s:e] for s, e in split_sentences(corpus)]
    by_kind: dict[str, list[str]] = {}
    for name, kind in entities.items():
        by_kind.setdefault(kind, []).append(name)
    sources = first_mentions(pairs, entities, rng)
    out, used = [], set()
    for pair, (start, end, kind) in sources:
        if len(out) >= n:
            break
        question = pair["question"]
        others = [e for e in sorted(by_kind.get(kind, [])) if e != question[start:end] and e not in used
                  and e.lower() not in question.lower()]
        rng.shuffle(others)
        asked = set(content_tokens(question[:start] + " " + question[end:]))
        for other in others:
            if not any(other in s and len(asked & set(content_tokens(s))) >= min(2, len(asked)) for s in sentences):
                used.add(other)
                out.append((pair, swap_entity(question, start, end, other), other))
                break
    return out

