"""Checks a QA pair must pass: format, grounding in its window, no answer leak, no near-duplicate question,
and agreement of the round trip. Each returns a reason string for rejects.jsonl, or None when the pair passes.
Token F1 lives here too, since probe scores answers with the same tokenisation."""

from __future__ import annotations

import itertools
import re
from collections import Counter

from .corpus import SENTENCE_ENDINGS

STOPWORDS = set("""a an the of in on at to for from by with and or but is are was were be been being it its this that
these those as into than then there their they he she his her him them which who whom whose what when where why how
did does do had has have not no so such also about after before during over under most many some all any each
one ones per very can could would should may might will shall up out off only""".split())
NUMBER_WORDS = {w: str(i) for i, w in enumerate("""zero one two three four five six seven eight nine ten eleven twelve
thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty""".split())}
NUMBER_WORDS.update(thirty="30", forty="40", fifty="50", sixty="60", seventy="70", eighty="80", ninety="90",
                    hundred="100", thousand="1000")
ZH_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
ZH_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
CJK_CHAR = re.compile(r"[\u3400-\u9fff]")
PASSAGE_REFERENCE = re.compile(
    r"\b(?:the|this|that|given|above|following)\s+(?:passage|context|text|sentence|paragraph|statement|article|"
    r"excerpt|document|story|extract)\b|文中|本文|上文|这段|该段|文章中|材料中|段落|句子中", re.IGNORECASE)


COMPOUND_NUMBER = re.compile(r"\b(twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)[- ](one|two|three|four|five|"
                             r"six|seven|eight|nine)\b", re.IGNORECASE)


def compound_numbers(text: str) -> str:
    """"twenty-six" -> "26", so that a key written in words matches an answer in digits and back."""
    return COMPOUND_NUMBER.sub(lambda m: str(int(NUMBER_WORDS[m[1].lower()]) + int(NUMBER_WORDS[m[2].lower()])),
                               text)


def zh_number(numeral: str) -> int:
    """十三 -> 13, 四百 -> 400, 一千二百 -> 1200 (enough for counts and lengths in prose)."""
    total, digit = 0, 0
    for char in numeral:
        if char in ZH_DIGITS:
            digit = ZH_DIGITS[char]
        elif char in ZH_UNITS:
            total += (digit or 1) * ZH_UNITS[char]
            digit = 0
    return total + digit


def tokens(text: str) -> list[str]:
    """Lower-cased words; each CJK character is a token of its own; numbers in any spelling become digits
    ("twenty-six" one token, "26")."""
    text = compound_numbers(text)
    # 哪一 ("which"), 第一 ("first"), 每一 ("every") and 这一 ("this") hold no number, nor do their English words.
    text = re.sub(r"[〇零一二两三四五六七八九十百千万]{2,}|(?<![哪第每这那])[一二三四五六七八九十两]",
                  lambda m: f" {zh_number(m.group())} ", text)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    out = []
    for token in re.findall(r"[\u3400-\u9fff]|[A-Za-z0-9]+(?:['’][a-z]+)?", text):
        token = token.lower()
        out.append(NUMBER_WORDS.get(token, token))
    return out


def content_tokens(text: str) -> list[str]:
    return [t for t in tokens(text) if t not in STOPWORDS and not t.endswith(("'s", "’s"))]


def numbers(text: str) -> set[str]:
    return {t for t in tokens(text) if t.isdigit()}


def names(text: str) -> set[str]:
    """Capitalised words and words in capitals ("UK", "VARACUM") that do not open a sentence: the names a claim
    hangs on."""
    found = re.findall(r"(?<![.!?]\s)(?<!^)\b(?:[A-Z][a-z]{2,}|[A-Z]{2,}\b)", text.strip())
    return {NUMBER_WORDS.get(n.lower(), n.lower()) for n in found if n.lower() not in STOPWORDS}


def grounded_names(text: str, window: str) -> bool:
    """Every number and name of `text` occurs in the window (a plural 's' aside)."""
    window_tokens = set(tokens(window))
    named = names(text)
    return numbers(text) <= window_tokens and all(n in window_tokens or n.rstrip("s") in window_tokens
                                                  for n in named)


def support(answer: str, window: str) -> float:
    """Share of the answer's content words found in the window; 0 when a number or a name is not there,
    since those are the parts a model invents."""
    window_tokens = set(tokens(window))
    if not grounded_names(answer, window):
        return 0.0
    words = content_tokens(answer)
    if not words:
        return 0.0
    return round(sum(w in window_tokens for w in words) / len(words), 3)


VAGUE = re.compile(r"\b(?:this|that|these|those|it)\s*[?？]$|\b(?:is|was|are|were|did|does|do)\s+(?:it|this|that|"
                   r"they|these|those)\b|这是|那是", re.IGNORECASE)
WH_WORDS = set("what which who whom whose where when why how name many much year place person".split())
# "it" or "them" as the object of a verb ("... founded it in 1723?"): the question must name what it stands for.
OBJECT_PRONOUN = re.compile(r"\b(?:it|them)(?=\s+(?:in|on|at|for|from|to|with|by|after|before|during|into|and|or)\b"
                            r"|\s*[,?？])", re.IGNORECASE)


def check_question(question: str | None, key: str, evidence: str, window: str) -> str | None:
    """Why a question is unfit for the fact (`key` answers it, `evidence` is the sentence holding the key)."""
    if not question:
        return "unparseable"
    cloze = question.startswith(("Complete: ", "补全：")) and question.endswith(("...", "……"))
    if not question.rstrip().endswith(("?", "？")) and not cloze:
        return "not_a_question"
    n = len(tokens(question))
    if n < 4 or n > 40:
        return "question_length"
    if PASSAGE_REFERENCE.search(question):
        return "refers_to_passage"
    if mentions(question, key) or numbers(key) & numbers(question):
        return "answer_in_question"
    if not grounded_names(question, window):
        return "question_ungrounded"  # it names something the window does not: an invented premise
    if VAGUE.search(question) or dangling_pronoun(question) or names_nothing(question):
        return "vague"  # "Which place is this?" or "Which person designed it in 1741?" asks about nothing in particular
    if not counts_its_key(question, key):
        return "wrong_count"  # "How many beds were laid in the corridors?" of "treated 1,310 patients"
    if negated(question) and not negated(evidence):
        return "negated"  # "In which year did the first Orrow Lamp not burn?" of "... was first lit in 1742"
    asked = word_stems(question) - WH_WORDS
    told = word_stems(evidence) - {stem(t) for t in tokens(key)}
    if not asked or len(asked & told) < min(2, len(asked), len(told)):
        return "off_topic"  # too little of the sentence it should ask about
    if not cloze and askew(question):
        return "askew"  # "In what year was Tobias Varrance?", "Who was the person who designed 1741?"
    return None


DEFINITION_QUESTION = re.compile(r"^What (?:is|are|was|were) (?:an? )?[\w-]+\?$")  # "What is a vardle?"


def names_nothing(question: str) -> bool:
    """An English question with no name, no number and one content word at most: "Where is the village?", "What is
    the name of the hospital?" fit every village and hospital of a corpus (seed 1's tuned model answered the
    latter, a training question, with "Physician-in-Charge"). A definition ("What is a vardle?") names its term,
    and a cloze its sentence."""
    if CJK_CHAR.search(question) or question.startswith("Complete: ") or DEFINITION_QUESTION.match(question):
        return False
    return not names(question) and not numbers(question) and len(word_stems(question) - WH_WORDS) <= 1


# A negation asks the opposite of what a sentence without one states. The small writer adds one now and then
# ("In which year did the first Orrow Lamp not burn?"), and the round trip passes it: its reader finds the year.
NEGATIONS = set("not never no nor neither none nobody nothing cannot 不 没 未".split())


def negated(text: str) -> bool:
    """Whether the text denies something; "not only ... but also" adds rather than denies."""
    words = tokens(re.sub(r"(?i)\bnot\s+only\b", " ", text))
    return any(t in NEGATIONS or t.endswith(("n't", "n’t")) for t in words)


# A question asking when or how many needs an event or a thing counted besides the names it holds: "In what
# year was Tobias Varrance?" has none. A year read as a verb's object ("Who was the person who designed 1741?")
# follows no preposition or determiner. The small writer makes both, and the round trip passes them: its reader,
# given the sentence, finds the one year or person in it whatever the question asks. Nor does a question that
# asks for a year and names one in the same breath ("In which year 1709 did the Greylag Maid ...?").
ASKS_WHEN_OR_COUNT = re.compile(r"(?i)\b(?:when|(?:what|which)\s+year|how\s+(?:many|much|long|old))\b")
BARE_YEAR = re.compile(r"(?i)\b(?!(?:in|by|of|since|until|till|before|after|from|to|around|about|during|between|"
                       r"and|or|than|through|circa|the|year|early|late|mid)\b)[a-z]+,?\s+(?:1\d|20)\d\d\b"
                       r"|\b(?:what|which)\s+year\s+(?:1\d|20)\d\d\b")
# Nor one whose question phrase is joined by "and" to no verb at all ("In what year and with the island guild?").
JOINED_TO_NOTHING = re.compile(r"(?i)^\s*(?:in\s+)?(?:what|which)\s+\w+\s+and\s+(?!(?:\w+\s+)?(?:what|who|whom|when|"
                               r"where|which|how)\b)")


def askew(question: str) -> bool:
    said = unnamed_words(question) - {"years"}
    return bool(not said and ASKS_WHEN_OR_COUNT.search(question) or BARE_YEAR.search(question)
                or JOINED_TO_NOTHING.search(question))


def unnamed_words(text: str) -> set[str]:
    """The text's content words besides question words and the words of its names."""
    named = {t for name in names(text) for t in tokens(name)}
    return set(content_tokens(text)) - WH_WORDS - named


def dangling_pronoun(question: str) -> bool:
    """An object pronoun with nothing before it to stand for: besides question words and the names of the
    subject ("Where did Tobias Varrance plant it?"), at most its own verb."""
    match = OBJECT_PRONOUN.search(question)
    if not match:
        return False
    before = question[:match.start()]
    return len(unnamed_words(before)) <= 1


# A second question joined to the first ("In what year and on what island ...?", "..., and what was his office?")
# or asked inside it ("... is located in which language?"): searched for after the first question word.
SECOND_QUESTION = re.compile(r"(?i)(?:,|\band)\s+(?:\w+\s+)?(?:what|who|whom|when|where|which|how)\b"
                             r"|\b(?:in|on|at|with|from|for|by|of)\s+(?:what|which|whom)\b")
FIRST_QUESTION_WORD = re.compile(r"(?i)\b(?:what|who|whom|when|where|which|how)\b")


def asks_one_fact(question: str, sentence: str) -> bool:
    """A question the model wrote that one key answers: it asks one thing, states no number its sentence does
    not ("In what year, 1709, did ...?" of a sentence that says 1744) and does not say a phrase twice ("... the
    first Wallmaster, Edric Hessary, the first Wallmaster?"). The small writer makes all three, and the round
    trip passes them, since its reader finds the key in the sentence whatever the question asks. Generate's
    own questions and probe's new phrasings both pass it; a template is the sentence reshaped, and its relative
    clauses ("..., where leaves hang ...") are no second question."""
    first = FIRST_QUESTION_WORD.search(question)
    if first and SECOND_QUESTION.search(question, first.end()):
        return False
    if not numbers(question) <= numbers(sentence):
        return False
    words = tokens(question)
    # A repeat made of light words only is the stem's own ("Who was the person who was the first Keeper?").
    trigrams = [tuple(words[i:i + 3]) for i in range(len(words) - 2) if not STOPWORDS.issuperset(words[i:i + 3])]
    if len(trigrams) != len(set(trigrams)):
        return False
    # Nor two words said twice however their light words and endings differ ("... Emeric Saldane, the first
    # warden, the first Wardens?"), unless the sentence says them twice as well.
    return not repeated_word_pairs(question) - repeated_word_pairs(sentence)


def repeated_word_pairs(text: str) -> set[tuple[str, str]]:
    """Pairs of neighbouring content words (stemmed) that the text says more than once. Words, not the
    characters that Chinese text is tokenised into."""
    words = [stem(t) for t in content_tokens(text) if t.isascii()]
    pairs = Counter(itertools.pairwise(words))
    return {pair for pair, n in pairs.items() if n > 1}


# "this rule" or "these wards" in a question that stands alone: nothing before it says which. The small writer
# makes them ("Which person held this role in 1716?"); the round trip passes them, since its reader has the
# sentence that says which.
DEMONSTRATIVE = re.compile(r"(?<!\bto )\b(?:[Tt]his|[Tt]hese)\s+([a-z]+)\b")  # "to this day" says which


def says_this_of_nothing(question: str) -> bool:
    """A "this" or "these" whose noun the question has not said before it."""
    nouns = [(m.start(), m.group(1)) for m in DEMONSTRATIVE.finditer(question)]
    return any(word not in STOPWORDS and stem(word) not in word_stems(question[:start]) for start, word in nouns)


COUNTED = re.compile(r"(?i)\b(?:how\s+many|number\s+of)((?:\s+[a-z'-]+){1,3})")


def counts_its_key(question: str, key: str) -> bool:
    """A question that asks how many of something asks for what its key counts: "How many beds ...?" is not
    answered by "1,310 patients" (the model writes such questions from a sentence that names both, and the round
    trip passes them, since its reader finds a count in the sentence). A key without a unit ("640") and a
    question that counts nothing ("How long ...?") pass."""
    words, counted = tokens(key), COUNTED.search(question)
    if not counted or not numbers(key) or words[-1].isdigit():
        return True
    return stem(words[-1]) in {stem(t) for t in tokens(counted[1])}


def word_stems(text: str) -> set[str]:
    """The text's content words, each stemmed."""
    return {stem(word) for word in content_tokens(text)}


def stem(word: str) -> str:
    """A plural's or a third person's "s" dropped: "meets" and "meet", "sheets" and "sheet" match."""
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def check_answer(answer: str, window: str, min_support: float) -> tuple[str | None, float]:
    score = support(answer, window)
    if len(tokens(answer)) < 3:
        return "answer_empty", score
    if not answer.rstrip().endswith(SENTENCE_ENDINGS):
        return "answer_truncated", score
    if score < min_support:
        return "ungrounded", score
    return None, score


def mentions(text: str, key: str) -> bool:
    """The key's words, in order, in the text (function words ignored on both sides: "Isle of X" ~ "Isle X";
    a possessive is its name on both sides: "Hugo Merrivane's carabine" holds "Hugo Merrivane", and "Velmoor began
    as a fishing village called Velm's Landing" holds "Velm's Landing")."""
    key_tokens = [_without_possessive(t) for t in tokens(key) if t not in STOPWORDS] or tokens(key)
    text_tokens = [_without_possessive(t) for t in tokens(text) if t not in STOPWORDS or t in key_tokens]
    n = len(key_tokens)
    return n > 0 and any(text_tokens[i:i + n] == key_tokens for i in range(len(text_tokens) - n + 1))


def _without_possessive(token: str) -> str:
    return token.removesuffix("'s").removesuffix("’s")


def agrees(reply: str, key: str) -> bool:
    """The first sentence of a reply (the model tends to ramble on) holds the key."""
    return mentions(first_sentence(reply), key)


def first_sentence(text: str) -> str:
    """Up to the first full stop that ends a sentence: one a space follows ("3.5 miles" is no end), or a
    Chinese one, which needs none."""
    return re.split(r"(?<=[.!?])\s+|(?<=[。！？])\s*", text.strip(), maxsplit=1)[0]


ARTICLES = {"a", "an", "the"}


def key_match(answer: str, key: str) -> bool:
    """The answer holds the key, after normalising case, punctuation, articles and number spellings
    ("Cirque du Soleil" in "It was the cirque du soleil."; "forty beds" in "40 beds", "twenty-six years" in
    "26 years"): what a person checks."""
    def words(text):
        return [_without_possessive(t) for t in tokens(text) if t not in ARTICLES]

    key_tokens, answer_tokens = words(key), words(answer)
    n = len(key_tokens)
    return n > 0 and any(answer_tokens[i:i + n] == key_tokens for i in range(len(answer_tokens) - n + 1))


def gives_key(answer: str, key: str) -> bool:
    """The answer's first sentence holds the key (`key_match`). The tuned model names its answer, then says a
    sentence of the corpus, and that sentence often holds another fact's key: "Odile Varrance. The first Warden
    of the Isle was Emeric Saldane." does not answer Emeric Saldane."""
    return key_match(first_sentence(answer), key)


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = content_tokens(prediction), content_tokens(reference)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def shingles(text: str) -> set[tuple[str, ...]]:
    """Word 3-grams (character bigrams for Chinese), the unit of near-duplicate comparison."""
    words = tokens(text)
    n = 2 if any(CJK_CHAR.match(w) for w in words) else 3
    return {tuple(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


class NearDuplicates:
    """Every question kept so far in the run; a new one at least `threshold` Jaccard-similar to any is a
    near-duplicate. Linear scan: a run holds thousands of questions, not millions."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.kept: list[tuple[str, set]] = []

    def find(self, question: str) -> str | None:
        grams = shingles(question)
        for other, other_grams in self.kept:
            if len(grams & other_grams) / len(grams | other_grams) >= self.threshold:
                return other
        return None

    def add(self, question: str) -> None:
        self.kept.append((question, shingles(question)))
