"""Restatements of a window for tune's text mix: its sentences regrouped around each of its entities in turn,
so each fact is also stated from its other side and in a new order (text stated one way is not knowledge a
small model retrieves in other words: DESIGN.md)."""

from __future__ import annotations

import random

from . import filters
from .corpus import SENTENCE_ENDINGS, Window, normalize, split_sentences
from .entities import find_mentions, resolve_pronouns


def window_texts(window: Window, entities: dict, rewrites: int, min_support: float, seed: int, language: str
                 ) -> tuple[list[dict], list[dict]]:
    """The window's text and `rewrites` restatements of it, for tune's text mix (a fact stated one way is
    not knowledge a small model retrieves in other words; DESIGN.md). A restatement regroups the window's
    sentences around each entity in turn ("Ilka Tamsell: ... "), so each fact is also named from its other
    side, in a new order every time. Each is checked against the window by the support filter; the ones that
    fail come back as rejects."""
    sentences = resolve_pronouns([normalize(window.text[s - window.start:e - window.start])
                                  for s, e in split_sentences(window.text, window.start)], entities, language)
    sentences = [x for x in sentences if x.endswith(SENTENCE_ENDINGS)]
    about: dict[str, list[str]] = {}
    for sentence in sentences:
        for s, e, _ in find_mentions(sentence, entities):
            about.setdefault(sentence[s:e], []).append(sentence)
    pivots = sorted(about, key=lambda name: (-len(about[name]), name))
    texts = [{"id": f"w{window.index:04d}-t", "window": window.index, "kind": "window",
              "text": normalize(window.text)}]
    rejects = []
    colon = "：" if language == "zh" else ": "
    for k in range(rewrites):
        rng = random.Random(f"{seed}:rewrite:{window.index}:{k}")  # a str seed is hashed stably (sha512)
        shift, told, parts = k % max(len(pivots), 1), set(), []
        for name in pivots[shift:] + pivots[:shift]:  # a new first pivot each time
            group = [x for x in about[name] if x not in told]
            rng.shuffle(group)
            told.update(group)
            if group:
                parts.append(name + colon + " ".join(group))
        rest = [x for x in sentences if x not in told]
        rng.shuffle(rest)
        text = "\n".join(parts + ([" ".join(rest)] if rest else []))
        score = filters.support(text, window.text)
        record = {"id": f"w{window.index:04d}-t{k}", "window": window.index, "kind": "rewrite", "text": text,
                  "support": score}
        if score >= min_support and text:
            texts.append(record)
        else:
            rejects.append({**record, "reason": "rewrite_ungrounded"})
    return texts, rejects
