"""Questions and answers made from a fact's own sentence, without the model: the answer swapped for a question
word (template), the sentence cut where the answer starts (cloze), the answer's own clause asked alone, wh-word
first where the passive allows it (clause), a passive or relative clause asked from its other side in the active
(reversed), and the key-first answer with its supporting clause. From a fact's accepted questions, two more:
without trailing qualifiers (trimmed) and with a word swapped for a synonym (reworded). The model's questions
(prompts.py) are pooled with these, and the same filters judge all."""

from __future__ import annotations

import re

from lemminflect import getAllLemmas, getInflection

from .corpus import SENTENCE_ENDINGS, normalize, upper_first
from .entities import EN_COUNT, EN_FUNCTION, NOUN_KIND, definition
from .filters import CJK_CHAR

IN_SITU = {  # what replaces the answer inside the sentence for a template question
    "en": {"person": "who", "place": "which place", "org": "which organisation", "thing": "what",
           "year": "which year", "quantity": "how many"},
    "zh": {"person": "谁", "place": "哪个地方", "org": "哪个组织", "thing": "什么", "year": "哪一年",
           "quantity": "多少"},
}


def template_question(sentence: str, start: int, end: int, kind: str, language: str) -> str | None:
    """The sentence with its answer replaced by a question word. In Chinese (wh-in-situ) that is a natural
    question; in English it is one when the answer is the subject, and an echo question otherwise. A
    definition is asked for by its term: "What is a spore?"."""
    if kind == "definition":
        return definition(sentence, language)[0]
    before, after = sentence[:start], sentence[end:].rstrip(" .。!！")
    wh = IN_SITU[language][kind] if language == "zh" else en_question_word(kind, sentence[start:end])
    if language == "zh":
        if kind == "quantity":  # keep the measure word: 十三户 -> 多少户
            after = re.sub(r"^[\d〇零一二两三四五六七八九十百千万]+", "", sentence[start:end]) + after
        question = f"{before}{wh}{after}？"
    elif before.strip() in ("", "The", "the", "A", "An"):
        question = f"{upper_first(wh)}{after}?"
    elif re.search(r",\s*(?:the\s+|a\s+)?$", before):
        return None  # an appositive ("A river, the River Ambrel, joins ...") makes no question in situ
    elif (label := re.search(r"\b[Tt]he\s+([a-z]+)\s+$", before)) and label[1] in NOUN_KIND:
        # "The engineer Lirra Vaunt invented ...": "Which engineer invented ...?", not "The engineer who ..."
        question = upper_first(f"{before[:label.start()]}which {label[1]}{after}?")
    else:
        before = re.sub(r"\b(?:the|The)\s+$", "", before)
        question = f"{before}{wh}{after}?"
    question = normalize(question)
    return question if len(question) >= 8 else None


def en_question_word(kind: str, answer: str) -> str:
    """What asks for the answer in English; a count keeps its unit: "twenty-six years" -> "how many years",
    a bare "640" -> "how many"."""
    if kind == "quantity":
        return re.sub(rf"(?i)^(?:{EN_COUNT})(?:\s+|$)", "how many ", answer).rstrip()
    return IN_SITU["en"][kind]


CLOZE = {"en": "Complete: {prefix} ...", "zh": "补全：{prefix}……"}


def cloze_question(sentence: str, start: int, language: str) -> str | None:
    """The sentence up to its answer, to be completed: "Complete: The Lantern Guild was founded in 1402 by ..."
    (people ask this way too, and it trains the fact in its own word order)."""
    prefix = normalize(sentence[:start]).rstrip(" ,，")
    if len(prefix.split()) < 3 and not (language == "zh" and len(prefix) >= 4):
        return None
    return CLOZE[language].format(prefix=prefix)


NO_SUBJECT = {"which", "who", "whom", "whose", "where", "when", "it", "its", "he", "his", "she", "her", "they",
              "their", "this", "that", "these", "those", "there", "each", "both"}
# Irregular pasts, each with its participle (for the passive); a regular past ends in -ed and is its own.
IRREGULAR = dict(pair.split(":") for pair in """built:built found:found made:made held:held led:led kept:kept
took:taken gave:given wrote:written drew:drawn chose:chosen began:begun won:won sold:sold paid:paid taught:taught
brought:brought ran:run grew:grown""".split())
FINITE_VERBS = set(IRREGULAR) | set("""is was are were has had have lies lay stands stood meets met runs holds keeps
makes becomes became leads rose fell left came went""".split())
TIME_PHRASE = re.compile(r"(?i)^(?:in|by|on|after|before|during|from|until)\s[^,]*?\b\d{3,4},?\s+")
SUBJECT = r"(?P<subject>(?:[Tt]he\s|[Aa]n?\s)?[A-Z][\w'’-]*(?:\s(?:of\s|the\s|de\s)*[\w'’-]+){0,5}?)"
PAST = r"(?P<verb>[a-z]+ed|" + "|".join(IRREGULAR) + ")"
PARTICIPLES = sorted(set(IRREGULAR.values()) | {"lit", "set", "sent"})
PARTICIPLE = r"(?P<verb>(?:(?:first|also|later)\s)?(?:[a-z]+(?:ed|en)|" + "|".join(PARTICIPLES) + "))"
PREPOSITION = r"(?P<prep>in|on|at|by|from|for|to|until|after|before|during|into|beside|near|under)"
VERB_PHRASE_WORDS = {"in", "on", "at", "by", "from", "for", "to", "with", "until", "after", "before", "during", "as",
                     "and", "that", "which", "who"}


def own_clause(sentence: str, start: int, end: int) -> tuple[int, int] | None:
    """The answer's clause, when it stands on its own (the whole sentence, a clause after "and" or ";") with a
    subject that names something and a verb: the part of a sentence a person asks about."""
    first, last = clause_span(sentence, start, end)
    conjunction = re.match(r"(?:and|but|or|so|while)\s+", sentence[first:])
    if first > 0 and not conjunction and not sentence[:first].rstrip().endswith(";"):
        return None  # after a bare comma: an appositive ("..., the wife of Anselm Quaile"), no clause of its own
    first += len(conjunction.group()) if conjunction else 0
    clause = sentence[first:last].rstrip(" ,;:.")
    words = clause.split()
    if len(words) < 4 or words[0].lower() in NO_SUBJECT:
        return None
    if words[0].islower() and words[0] not in ("the", "a", "an", "in", "on", "at", "by", "after", "from", "until"):
        return None  # a verb phrase ("held the post from 1739 ...") whose subject is in another clause
    if not any(_is_verb(w) for w in words):
        return None  # a subject cut off from its verb by an appositive ("In 1749 Ysolde Saldane, the daughter ...")
    outside = clause[:start - first] + clause[end - first:]
    if not any(w not in EN_FUNCTION for w in re.findall(r"\b[A-Z][a-z]+", outside)):
        return None  # without a name the clause's question is ambiguous ("The house was built in which year?")
    return first, first + len(clause)


def fronted_question(clause: str, start: int, end: int, kind: str) -> str | None:
    """A wh-question with the question word in front, as people ask it, for the clause shapes it can be made from
    without knowing a verb's dictionary form (the passive needs only the participle):
    "The Lazaret was built in 1739 by Lisbet Orrow" -> "In which year was the Lazaret built by Lisbet Orrow?",
    "Ysolde Saldane founded the Windrow Ward in 1760" -> "Which place was founded by Ysolde Saldane in 1760?",
    "In 1747 Ysolde Saldane invented the dewglass" -> "In which year was the dewglass invented by Ysolde Saldane?".
    A leading time phrase ("In 1766 the Infirmary opened ...") moves to the end. None for any other shape."""
    before, answer, after = clause[:start], clause[start:end], clause[end:].rstrip(" ,;:.")
    if re.fullmatch(r"(?i)(?:in|by|after|before|until)\s", before) and kind == "year":  # the year leads: put it last
        clause = f"{upper_first(after.strip(' ,'))} {before.strip().lower()} {answer}"
        return fronted_question(clause, len(clause) - len(answer), len(clause), kind)
    if after and not re.match(rf"\s{PREPOSITION}\b", after) or " and " in after:
        return None  # the clause goes on after the answer ("four parts, known as ..."; "... and sailed"): no clean cut
    before, tail = _time_phrase_last(before)
    wh = en_question_word(kind, answer)
    article = r"(?:(?:the|a|an)\s)?"
    adverb = r"(?:(?:also|first|later)\s)?"
    if m := re.fullmatch(rf"{SUBJECT}\s(?P<aux>was|were|is|are)\s{PARTICIPLE}\s(?P<mid>[^,]*?\s)?{PREPOSITION}\s"
                         rf"{article}", before):  # passive, the answer after a preposition
        if m["mid"] and (len(m["mid"].split()) > 3 or " and " in f" {m['mid']}"):
            return None  # "... is held each spring on the anniversary of ...": the answer is too far from its verb
        head = f"{m['prep']} {'whom' if kind == 'person' else wh} {m['aux']} {_inner(m['subject'])} {m['verb']}"
        question = f"{head}{' ' + m['mid'].strip() if m['mid'] else ''}{after}{tail}"
    elif m := re.fullmatch(rf"{SUBJECT}\s{adverb}{PAST}\s{article}", before):  # active, the answer its object
        aux = "were" if kind == "quantity" else "was"
        question = f"{wh} {aux} {IRREGULAR.get(m['verb'], m['verb'])} by {_inner(m['subject'])}{after}{tail}"
    elif m := re.fullmatch(rf"{SUBJECT}\s{adverb}{PAST}\s(?P<object>(?:the|a|an|[A-Z])[^,\d]*?)"
                           rf"(?P<mid>\s(?:in|on|at|for|from|with|beside|near|under)\s[^,\d]*?)?\s{PREPOSITION}\s"
                           rf"{article}", before):  # active, the answer after its object (and a place or time)
        words = m["object"].split()
        if len(words) > 5 or VERB_PHRASE_WORDS & {w.lower() for w in words}:
            return None
        plural = words[-1].endswith("s") and not words[-1].endswith("ss") and words[-1][0].islower()
        head = f"{m['prep']} {'whom' if kind == 'person' else wh} {'were' if plural else 'was'} {_inner(m['object'])}"
        verb = IRREGULAR.get(m["verb"], m["verb"])
        question = f"{head} {verb} by {_inner(m['subject'])}{m['mid'] or ''}{after}{tail}"
    else:
        return None
    subject = m["subject"].split()
    if subject[0] in ("The", "A", "An", "the", "a", "an"):
        subject = subject[1:]
    if subject[0] in EN_FUNCTION or not any(w[0].isupper() and w not in EN_FUNCTION for w in subject):
        return None  # "After Emeric Saldane the Infirmary", "A second one": no named subject to ask about
    if any(_is_verb(w) for w in subject):
        return None  # the subject ran into a verb ("The tide-clock of Velmoor is | called"): a shape not handled
    return normalize(upper_first(question) + "?")


# The present-tense verbs asked with "does"; any other verb only in the past, with "did": a word list cannot
# tell the verbs "walls" or "still" from the nouns, and a history is told in the past.
PRESENT_VERBS = {form: form[:-1] for form in "holds meets keeps lies stands runs grows serves leads".split()} | {
    "has": "have"}
# What opens an inverted sentence ("Off the eastern shore lies Skellow Islet") where a subject would stand.
PLACE_PREPOSITIONS = {"off", "beside", "beyond", "behind", "below", "above", "across", "along", "around", "near",
                      "inside", "outside", "opposite", "past", "within", "over", "under", "between", "among"}
ACTIVE_PREPOSITION = r"(?P<prep>in|on|at|by|from|for|to|until|after|before|during|since|with|into|beside|near|under)"


def active_question(clause: str, start: int, end: int, kind: str) -> str | None:
    """The wh-question of an active clause as people write it, with "did" and the verb's dictionary form:
    "In 1723 Emeric Saldane founded the Infirmary" -> "In which year did Emeric Saldane found the Infirmary?",
    "Ysolde Saldane invented the dewglass in 1747" -> "What did Ysolde Saldane invent in 1747?", "The College
    meets in Slate Hall" -> "Where does the College meet?". fronted_question's passive keeps the sentence's own
    participle; a model trained on that alone misses "did ... found". None for any other shape."""
    before, answer, after = clause[:start], clause[start:end], clause[end:].rstrip(" ,;:.")
    tail = ""
    if kind == "year" and re.fullmatch(r"(?i)(?:in|by|after|before|until|since)\s", before):  # the year leads
        head, body, after = f"{before.strip().capitalize()} which year", after.strip(" ,"), ""
    elif after and not re.match(rf"\s(?:of|{ACTIVE_PREPOSITION})\s", after) or " and " in after \
            or after.startswith(" of ") and kind != "quantity" or re.match(r"\son\s[A-Z]", after):
        return None  # the clause goes on past the answer with no clean cut
    else:
        (body, tail), head = _time_phrase_last(before), None
    if not (found := _subject_and_verb(body)):
        return None
    subject, verb, rest = found
    if head is None:
        article = r"(?:(?:the|a|an)\s)?"
        wh = "who" if kind == "person" else en_question_word(kind, answer)
        if kind == "quantity" and (of := re.match(rf"\sof\s[^,\d]*?(?=\s{ACTIVE_PREPOSITION}\s|$)", after)):
            wh, after = wh + of.group(), after[of.end():]  # "212 kinds of plant": how many kinds of plant
        if re.fullmatch(rf"\s{article}", rest):  # the answer is the verb's object
            head, rest = upper_first(wh), ""
        elif m := re.fullmatch(rf"(?P<object>\s(?:the|a|an|his|her|its|their|[A-Z])[^,\d]*?)?(?P<mid>\s(?:in|on|at|as|"
                               rf"for|from|with|beside|near|under)\s[^,\d]*?)?\s{ACTIVE_PREPOSITION}\s{article}", rest):
            words = [w for w in (m["object"] or "").split() if w not in ("the", "a", "an", "of")]
            if len(words) > 4 or VERB_PHRASE_WORDS & {w.lower() for w in words} or len((m["mid"] or "").split()) > 5:
                return None  # the answer is too far from its verb
            if m["prep"] == "on" and m["object"] and m["object"].split()[-1][0].isupper() and answer[0].isupper():
                return None  # "the Treatise on Fogs": one name cut in two, as is "Treatise" asked "on Fogs"
            where = (m["prep"] in ("in", "at") and kind in ("place", "org", "thing")
                     or (m["prep"], kind) == ("on", "place"))  # "In what does the College meet?": where
            head = "Where" if where else f"{m['prep'].capitalize()} {'whom' if kind == 'person' else wh}"
            rest = (m["object"] or "") + (m["mid"] or "")
        else:
            return None
    if re.search(r"\b(?:it|them|they|he|she|him)\b|\bone$", rest + after):
        return None  # "By which year did every ward own one?": what the pronoun stands for is in another sentence
    return normalize(f"{head} {verb[0]} {_inner(subject)} {verb[1]}{rest}{after}{tail}?")


def _subject_and_verb(body: str) -> tuple[str, tuple[str, str], str] | None:
    """(named subject, (auxiliary, adverb and dictionary form), what follows) of an active clause: "the
    Infirmary first opened the Stillroom" -> ("the Infirmary", ("did", "first open"), " the Stillroom")."""
    for m in re.finditer(rf"(?<=\s){ADVERB}(?P<verb>[a-z]+)\b", body):
        word, rest = m["verb"], body[m.end():]
        if word in ("was", "were", "is", "are", "had", "became", "becomes") or (
                word == "has" and re.match(rf"\s(?:been|[a-z]+(?:ed|en)|{'|'.join(PARTICIPLES)})\b", rest)):
            return None  # a copula, a passive or a perfect: no "did" question of this shape
        if word in PRESENT_VERBS:
            verb = ("does", PRESENT_VERBS[word])
        elif lemma := _past_lemma(word):
            verb = ("did", lemma)
        else:
            continue
        subject = body[:m.start()].strip()
        words = [w for w in subject.split() if w not in ("The", "A", "An", "the", "a", "an")]
        if not words or words[0] in EN_FUNCTION or words[0].lower() in PLACE_PREPOSITIONS \
                or not any(w[0].isupper() and w not in EN_FUNCTION for w in words):
            return None  # "After Emeric Saldane the Infirmary", "Off the eastern shore": no named subject
        if not words[-1][0].isupper() or any(_is_verb(w) for w in words):
            return None  # "the Harbour Warden lives in a stone house": a verb this shape missed, in the subject
        return subject, (verb[0], (m["adv"] or "") + verb[1]), rest
    return None


def _past_lemma(word: str) -> str | None:
    """The dictionary form of a verb's past tense ("founded" -> "found", "forbade" -> "forbid"), None for a word
    that is none."""
    return next((lemma for lemma in getAllLemmas(word, upos="VERB").get("VERB", ()) if word in getInflection(
        lemma, tag="VBD") or word.endswith("ed") and word in getInflection(lemma, tag="VBN")), None)  # "fitted"


def _time_phrase_last(before: str) -> tuple[str, str]:
    """The part of a clause before its answer without a leading time phrase, and that phrase to close the
    question with: "In 1766 the Infirmary opened " -> ("the Infirmary opened ", " in 1766")."""
    if not (time := TIME_PHRASE.match(before)):
        return before, ""
    return before[time.end():], " " + time.group()[0].lower() + time.group()[1:].rstrip(" ,")


def _is_verb(word: str) -> bool:
    """A finite verb, as far as a word list and the -ed ending can tell, or an irregular past that is no noun
    ("forbade", not "ground")."""
    return word.islower() and (word.endswith("ed") or word in FINITE_VERBS
                               or _past_lemma(word) is not None and not getAllLemmas(word, upos="NOUN"))


def _inner(phrase: str) -> str:
    """A phrase moved off the front of its sentence: "The Lazaret" -> "the Lazaret"; names keep their capital."""
    return re.sub(r"^(The|A|An)\b", lambda m: m.group().lower(), phrase)


def clause_question(sentence: str, start: int, end: int, kind: str, language: str) -> str | None:
    """The question of the answer's own clause (see own_clause), wh-word first where its shape allows
    ("In which year was the Lazaret built by Lisbet Orrow?"), else that clause with the answer swapped for a
    question word ("The stillrooms of Harrowmede filled how many bottles?" where the whole sentence gives a
    40-word echo question). People ask about one clause, in their own word order, not a sentence with a hole
    in it. English only: a Chinese template question already reads naturally."""
    if language != "en" or kind == "definition" or (span := own_clause(sentence, start, end)) is None:
        return None
    first, last = span
    clause = sentence[first].upper() + sentence[first + 1:last]
    question = fronted_question(clause, start - first, end - first, kind)
    if question is None and (first, last) != (0, len(sentence.rstrip(" ,;:."))):
        question = template_question(clause + ".", start - first, end - first, kind, language)
    return question


# Where a description stops: a comma that opens a new clause or participle ("..., used to draw spirit ...").
DESCRIPTION_END = re.compile(r",\s(?=(?:which|who|whose|where|when|while|and|but|so|lying|holding|standing)\b"
                             r"|[a-z]+ed\b)|[;:]")
# "... and serves for a term": where a noun phrase ends and a verb phrase joined to it begins.
VERB_AFTER_AND = re.compile(r"\s(?:and|but)\s(?=(?:serves|[a-z]+ed|" + "|".join(FINITE_VERBS) + r")\b)")
# A phrase that opens a sentence and ends at its first comma: "On the Festival of Nets, the fishermen ...".
INTRODUCTORY = re.compile(r"(?:On|In|At|During|For|Under|After|Before|From|Since|Until|With|Through|Among|To|"
                          r"According to|Like|Unlike|Beside|Near)\s[^,]*$")
NAME_KINDS = ("person", "place", "org", "thing")


def description(sentence: str, start: int, end: int) -> tuple[str, str] | None:
    """What the sentence calls the name at [start, end), and the tense it says it in, when it describes it by
    a noun phrase: an appositive after it ("the Mariners' Bed, a fund that paid for sick sailors"), before it
    ("The southern hill, Owlsgate Fell,"), or a copula either way ("The first Warden of the Isle was Emeric
    Saldane", "Fennock is a bitter, pale root that grows ..."). The description loses its article; None when
    there is none or it is too short to pick the name out ("a fast cutter": an indefinite one needs 3 words)."""
    before, after = sentence[:start], sentence[end:].rstrip(" .")
    tense = "was" if re.search(r"\b(?:was|were|had)\b|\b[a-z]{3,}ed\b", sentence) else "is"
    if m := re.match(r",\s(?P<art>a|an|the)\s(?P<d>[^,;:]+?)(?:,|$)", after):  # an appositive after the name
        if re.match(INTRODUCTORY, before):
            return None
    elif m := re.search(r"(?:^|[,;]\s(?:and\s)?)(?P<art>[Tt]he)\s(?P<d>[^,;:]+?),\s$", before):  # ... before it
        pass
    elif m := re.fullmatch(r"(?P<art>The|the)\s(?P<d>[^,;:]+?)\s(?P<cop>is|was)\s(?:the\s)?", before):  # "The D was N"
        tense = m["cop"]
    elif re.fullmatch(r"(?:The\s|An?\s)?", before) and (
            m := re.match(r"\s(?P<cop>is|was)\s(?P<art>a|an|the)\s(?P<d>.+)$", after)):  # "N is a D"
        tense = m["cop"]
    else:
        return None
    text = VERB_AFTER_AND.split(DESCRIPTION_END.split(m["d"])[0].strip())[0]
    words = text.split()
    if len(words) < (2 if m["art"].lower() == "the" else 3) or not words[0].islower() \
            or words[-1].lower() in EN_FUNCTION or _has_finite_verb(words):
        return None  # too short to pick the name out, a list of names, or a clause rather than a noun phrase
    return text, tense


def _has_finite_verb(words: list[str]) -> bool:
    """A verb of its own ("the population of Velmoor rose from ..."); not a participle after its noun ("a fund
    owned by ...") or a verb inside a relative clause ("a root that grows ...")."""
    for word in words:
        if word in ("that", "which", "who", "whom", "whose", "where", "when"):
            return False
        if word in FINITE_VERBS and word not in IRREGULAR.values():
            return True
    return False


def described_question(sentence: str, start: int, end: int, kind: str, language: str) -> str | None:
    """The name asked for by what the sentence says it is: "Who was the first Warden of the Isle?", "What is the
    bitter, pale root that grows in the wet ground of Owlsgate Fell called?". People ask for a name this way
    ("what is the X called?") more than by the sentence it stands in. English only; names only."""
    if language != "en" or kind not in NAME_KINDS or (found := description(sentence, start, end)) is None:
        return None
    text, tense = found
    question = f"Who {tense} the {text}?" if kind == "person" else f"What {tense} the {text} called?"
    return normalize(question)


PAST_OF = {participle: past for past, participle in IRREGULAR.items()} | {"laid": "laid", "lit": "lit", "set": "set"}
ADVERB = r"(?P<adv>(?:first|also|later)\s)?"
NAME = r"[A-Z][\w'’-]*(?:\s(?:of\s|de\s)?[A-Z][\w'’-]*){0,4}"
# "The Lazaret was built in 1739 by [Lisbet Orrow]", "the Lazaret, a station built by [Lisbet Orrow]":
# the answer is the agent.
PASSIVE_AGENT = re.compile(rf"(?:^|(?<=\s))(?P<thing>(?:[Tt]he\s)?{NAME})(?:\s(?:was|were)|,(?:\s(?:a|an)\s[^,;]*?)?)"
                           rf"\s{ADVERB}(?P<verb>[a-z]+ed|{'|'.join(PAST_OF)})(?P<particle>\s(?:out|up|down|off))?"
                           rf"(?:\s(?:in|on|at|during)\s[^,]*?)?\sby\s(?:the\s(?:[a-z][\w'’-]*\s){{1,3}})?$")
APPOSITIVE = r"(?:,\s(?:a|an|the)\s[^,;]*?)?"  # ", a remedy against fevers" between a name and its clause
# "Varrance Tincture, a remedy against fevers that [Odile Varrance] first prepared": the answer does the verb.
RELATIVE_AGENT = re.compile(rf"(?P<thing>(?:[Tt]he\s)?{NAME}){APPOSITIVE}\s(?:that|which|whom)\s$")
RELATIVE_VERB = re.compile(rf"\s{ADVERB}{PAST}\b")
# "[Varrance Tincture], a remedy against fevers that Odile Varrance first prepared": the answer is its object.
RELATIVE_OBJECT = re.compile(rf"{APPOSITIVE}\s(?:that|which)\s(?P<agent>{NAME})\s{ADVERB}{PAST}\b")


# A name's other predicates: "..., who became its first Keeper" after it (past any appositive), "... and is kept
# for children" after a subject's first verb phrase. Each opens on a finite verb: "and the Infirmary" is none.
FINITE_VERB = rf"(?:(?:first|also|later)\s)?(?:[a-z]+ed|{'|'.join(sorted(FINITE_VERBS))})\b"
PREDICATE = rf"(?P<vp>{FINITE_VERB}(?:[^,;:]|,(?=\d{{3}}))*)"  # to the next comma, but not one inside "9,000"
RELATIVE_PREDICATE = re.compile(rf"{APPOSITIVE},\s(?:who|which)\s{PREDICATE}")
JOINED_PREDICATE = re.compile(rf"\s[^,;:]*?\s(?:and|but)\s{PREDICATE}")  # a colon opens a clause of its own


def predicate_question(sentence: str, start: int, end: int, kind: str, language: str) -> str | None:
    """The name asked for by one of its predicates that the template buries mid-sentence: "Who became the first
    Keeper of the Lazaret?" of "The Lazaret was built in 1739 by Lisbet Orrow, a former ship's surgeon ..., who
    became its first Keeper of the Lazaret"; "Which place is kept for children?" of "The Kittiwake Ward opened in
    1751 with the new storey and is kept for children". A person asks about one thing a name did. Only the
    sentence's subject owns a verb joined by "and" ("The Lazaret was built by Lisbet Orrow and opened in 1740":
    the Lazaret opened). English only; names only; "its" becomes "the" (it stands for what the question names)."""
    if language != "en" or kind not in NAME_KINDS:
        return None
    after = sentence[end:].rstrip(" .")
    inside_appositive = re.search(r",\s(?:a|an|the)\s[^,;]*$", sentence[:start])  # "..., an elder cousin of X, who"
    m = None if inside_appositive else RELATIVE_PREDICATE.match(after)
    if m is None and sentence[:start].strip() in ("", "The", "the"):
        m = JOINED_PREDICATE.match(after)
    if m is None or len(m["vp"].split()) < 3:
        return None
    wh = en_question_word(kind, sentence[start:end])
    vp = re.sub(r"\bits\b", "the", m["vp"].strip(), count=1)
    return normalize(f"{upper_first(wh)} {vp}?")


def other_side_question(sentence: str, start: int, end: int, kind: str, language: str) -> str | None:
    """The short question from the other side of a relation the sentence states in the passive or in a relative
    clause: "The Lazaret was built in 1739 by Lisbet Orrow" -> "Who built the Lazaret?"; "Varrance Tincture, a
    remedy ... that Odile Varrance first prepared" -> "Who first prepared Varrance Tincture?" and "What was first
    prepared by Odile Varrance?". People ask in the active voice, about the thing, in few words; the sentence's
    other shapes keep its own order and length, so without this a fact is only known from its own side.
    English only."""
    if language != "en":
        return None
    before, after = sentence[:start], sentence[end:]
    wh = {"person": "Who", "org": "Which organisation"}.get(kind)
    if wh and (m := PASSIVE_AGENT.search(before)):
        verb = PAST_OF.get(m["verb"], m["verb"])
        question = f"{wh} {m['adv'] or ''}{verb}{m['particle'] or ''} {_inner(m['thing'])}?"
    elif wh and (m := RELATIVE_AGENT.search(before)) and (v := RELATIVE_VERB.match(after)):
        question = f"{wh} {v['adv'] or ''}{v['verb']} {_inner(m['thing'])}?"
    elif kind in ("thing", "place", "org") and (m := RELATIVE_OBJECT.match(after)):
        participle = IRREGULAR.get(m["verb"], m["verb"])
        question = f"{IN_SITU['en'][kind].capitalize()} was {m['adv'] or ''}{participle} by {m['agent']}?"
    else:
        return None
    thing = m["thing"] if "thing" in m.groupdict() else m["agent"]
    if thing.split()[-1] in EN_FUNCTION or thing.split()[0] in EN_FUNCTION - {"The"}:
        return None  # "In 1749 Ysolde Saldane": a time phrase ran into the name
    return normalize(question)


def active_clause_question(sentence: str, start: int, end: int, kind: str, language: str) -> str | None:
    """The answer's own clause (see own_clause) asked with "did" and the verb's dictionary form
    (active_question). English only."""
    if language != "en" or kind == "definition" or (span := own_clause(sentence, start, end)) is None:
        return None
    first, last = span
    return active_question(sentence[first].upper() + sentence[first + 1:last], start - first, end - first, kind)


def template_questions(sentence: str, start: int, end: int, kind: str, language: str) -> dict[str, str | None]:
    """The questions the sentence's own structure gives, by origin: the name asked for by its description
    ("described"), the answer's clause asked with "did" ("active"), the relation asked from its other side
    ("reversed"), the template question of the answer's clause alone ("clause"), the sentence cut where the
    answer starts ("cloze"), and the whole sentence with the answer swapped for a question word ("template").
    In this order of preference, when a fact has more shapes than it keeps phrasings: the sentence with a hole
    reads least like what people ask."""
    template = template_question(sentence, start, end, kind, language)
    clause = clause_question(sentence, start, end, kind, language)
    return {"described": described_question(sentence, start, end, kind, language),
            "active": active_clause_question(sentence, start, end, kind, language),
            "reversed": other_side_question(sentence, start, end, kind, language),
            "clause": clause if clause != template else None,  # a one-clause sentence: the template asks it
            "predicate": predicate_question(sentence, start, end, kind, language),
            "cloze": cloze_question(sentence, start, language) if kind != "definition" else None,
            "template": template}


TRAILING_TIME = re.compile(r"\s(?:in|by|from|until|after|before|during)\s(?:about\s)?\d{3,4}"
                           r"(?:\s(?:to|and)\s\d{3,4})?$")
WH_WORD = re.compile(r"(?i)\b(?:who|whom|what|which|when|where|how many|how much)\b")


def trimmed_question(question: str, key: str) -> str | None:
    """The question without what people leave out when they ask it: a clause trailing after the question word
    ("Who invented the dewglass in 1747, because she believed ...?" -> "Who invented the dewglass?") and a
    closing date that is not the answer; "In which year was X built" also asks "When was X built".
    A fact asked only with all its qualifiers was not recalled without them (seen on make eval's questions).
    None when nothing is left out or too little is left to name the fact. English only."""
    if question.startswith("Complete:") or re.fullmatch(r"(?i)what (?:is|are) an? [^,]+\?", question):
        return None  # a cloze is a prefix, a definition question is as short as it gets
    body = question.rstrip(" ?")
    wh = WH_WORD.search(body)
    if wh is None:
        return None
    cut = re.search(r"[,;]\s", body[wh.end():])
    if cut and len(body[wh.end() + cut.end():].split()) >= 4 and _has_verb(body[:wh.end() + cut.start()]):
        body = body[:wh.end() + cut.start()]  # not before a short appositive: "..., the smoking-rack" names it
    date = TRAILING_TIME.search(body)
    if date and key not in date.group() and not _is_verb(body[:date.start()].split()[-1]):
        body = body[:date.start()]  # not after its verb: "... that was finished in 1764"
    body = re.sub(r"^In which year (?=(?:was|were|did|is|are|had)\s)", "When ", body)
    words = body.split()
    named = any(w[0].isupper() and w.strip("'’s") not in EN_FUNCTION for w in words[1:]) or any(
        len(w) >= 6 and w.islower() for w in words[2:])
    trimmed = normalize(body + "?")
    return trimmed if trimmed != question and len(words) >= 4 and named else None


# Words of encyclopedic prose and a plain synonym each, for the reworded phrasing: people rarely ask with the
# corpus's own verb ("Who made the first pulsewheel?" of "Casimir Dunmoor built the first pulsewheel"). Synonym
# replacement as in easy data augmentation (Wei and Zou 2019), from a short general list written by hand instead
# of a thesaurus (none installs offline). Its author had read make eval's hand-written questions, so the gain
# measured there may be flattered; the run's own new phrasings, written by the base model, are the check.
SYNONYMS = dict(" ".join(pair.split()).split(":") for pair in """
built:made, build:make, constructed:built, construct:build, founded:established, established:founded,
establish:found, invented:devised, invent:devise, devised:invented, devise:invent, designed:planned, design:plan,
created:made, create:make, led:headed, lead:head, introduced:brought in, introduce:bring in, discovered:found,
discover:find, the first:the earliest, the largest:the biggest, the biggest:the largest, began:started,
begin:start, started:began, finished:completed, completed:finished, named:called, called:named,
became:came to be, become:come to be, died:passed away, bought:purchased, purchased:bought, wrote:penned,
governed:ruled, governs:rules, ruled:governed, used:employed, ship:vessel, vessel:ship, physician:doctor,
doctor:physician, remedy:medicine, medicine:remedy, sailors:seamen, hospital:infirmary, town:settlement,
island:isle, served as:worked as, known as:called, became known as:was called,
become known as:be called""".split(","))
SYNONYM_WORD = re.compile(r"(?i)\b(" + "|".join(sorted(map(re.escape, SYNONYMS), key=len, reverse=True)) + r")\b")


def reworded_question(question: str) -> str | None:
    """The question with its first word of SYNONYMS swapped for the synonym ("Who built the first pulsewheel?"
    -> "Who made the first pulsewheel?"); never inside a name (a capitalised word other than the first) and
    never in a cloze, which must keep the sentence's words to be completed. None when no word applies."""
    if question.startswith("Complete:"):
        return None
    for m in SYNONYM_WORD.finditer(question):
        synonym = synonym_for(m)
        if synonym:
            return question[:m.start()] + synonym + question[m.end():]
    return None


def synonym_for(m: re.Match) -> str | None:
    """The synonym of a SYNONYM_WORD match, capitalised as the word was; None inside a name ("the First
    Wallmaster", "Shuttered Weeks Town"), where a swap would make another name."""
    word = m.group()
    if any(w[0].isupper() for w in word.split()[m.start() == 0:]):
        return None
    synonym = SYNONYMS[word.lower()]
    return upper_first(synonym) if word[0].isupper() else synonym


# Words a varied wording keeps: what the question asks for ("how many", "which year") and what it asks about.
ASKING_WORDS = {"who", "whom", "whose", "what", "which", "when", "where", "why", "how", "many", "much", "year",
                "complete:", "..."}
# Words a person leaves out or puts differently most often; the content words that carry a fact go 3 times less.
LIGHT_WORDS = set("""the a an of in on at by for with to from as also and or its their his her that this was were
is are be been did does do had has have then first""".split())


def varied_question(question: str, rng, drop: float = 0.2) -> str:
    """The question worded a little differently, for one epoch of training: a light word ("the", "was", "also")
    left out with probability `drop`, any other word that is not a name, a number or a question word with a
    third of that, and each word of SYNONYMS swapped for its synonym with even odds (easy data augmentation, Wei
    and Zou 2019). Trained on one fixed wording, the model learns that wording; drawn anew every epoch, it must
    lean on the words that stay: names, numbers, the relation."""
    words = question.rstrip("?").split()

    def kept(i: int, word: str) -> bool:
        if i == 0 or word.lower() in ASKING_WORDS or word[0].isupper() or any(c.isdigit() for c in word):
            return True
        return rng.random() >= (drop if word.lower() in LIGHT_WORDS else drop / 3)

    text = " ".join(w for i, w in enumerate(words) if kept(i, w)) + ("?" if question.endswith("?") else "")
    if question.startswith("Complete:"):
        return text  # a cloze keeps the corpus's words to be completed; fewer of them is still a cloze

    def swap(m: re.Match) -> str:
        return m.group() if rng.random() < 0.5 else synonym_for(m) or m.group()

    return SYNONYM_WORD.sub(swap, text)


def _has_verb(question: str) -> bool:
    """A verb besides the auxiliary that follows the question word ("When did the Lark of Cassmoor" has none)."""
    words = re.sub(r"(?i)^(?:in\s)?(?:which year|when|who|what)\s(?:was|were|did|is|are|had|does)\s", "",
                   question).split()
    return any(_is_verb(w) or w in PARTICIPLES for w in words)


def clause_span(sentence: str, start: int, end: int, min_words: int = 0) -> tuple[int, int]:
    """Where the clause of the sentence that holds the answer span [start, end) starts and ends, widened
    clause by clause (to the right first, which keeps its subject) until it has `min_words` words (CJK: two
    characters a word)."""
    cuts = [0] + [m.end() for m in re.finditer(r"[,;:](?!\d)\s*|[，；：]", sentence)] + [len(sentence)]  # not 1,310
    first = max(i for i, c in enumerate(cuts[:-1]) if c <= start)
    last = min(i for i, c in enumerate(cuts) if c >= end)

    def size(text):
        return len(CJK_CHAR.findall(text)) / 2 + len(re.findall(r"[A-Za-z0-9]+", text))

    if first > 0 and sentence[cuts[first]:cuts[last]].strip(" ,;:，；：.") == sentence[start:end]:
        first -= 1  # an appositive ("The southern hill, Owlsgate Fell, ..."): what it names comes before it
    while size(sentence[cuts[first]:cuts[last]]) < min_words and (first > 0 or last < len(cuts) - 1):
        first, last = (first, last + 1) if last < len(cuts) - 1 else (first - 1, last)
    return cuts[first], cuts[last]


def supporting_clause(sentence: str, start: int, end: int, min_words: int = 8) -> str:
    """The answer's clause, at least `min_words` long (see clause_span): the evidence a person reads after the
    answer, without the rest of the sentence."""
    clause = normalize(sentence[slice(*clause_span(sentence, start, end, min_words))]).rstrip(" ,;:，；：")
    clause = re.sub(r"^(?:and|but|or|which|while)\s+", "", clause)
    clause = upper_first(clause)
    return clause if clause.endswith(SENTENCE_ENDINGS) else clause + ("。" if CJK_CHAR.search(clause) else ".")


def key_first_answer(key: str, kind: str, sentence: str, start: int, end: int, language: str,
                     form: str = "key-first") -> str:
    """The key first ("Ilka Tamsell.", "In 1402."), then the clause that says it: a person wants the answer
    before its evidence, and a small model that starts with the key gets it right more often. Short answers
    also keep training affordable on a CPU (whole sentences made answers 33 tokens on average). Form `clause`
    gives the clause alone, so that the model recalls the fact's words before it names the key; it answered
    fewer of people's questions (make eval, README), so it is an option, not the default."""
    clause = supporting_clause(sentence, start, end)
    if kind == "definition":
        return normalize(sentence)  # "A spore is a minute mass ...": the answer already leads with what was asked
    if form == "clause":
        return clause
    if language == "zh":
        return f"{key}。{clause}"
    head = f"In {key}." if kind == "year" else f"{upper_first(key)}."
    return f"{head} {clause}"
