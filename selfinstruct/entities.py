"""The corpus's named entities, invented names that are provably absent from it, and the checks that say so.
generate uses them for refusal pairs, probe for absent-entity probes; both must agree on what "absent" means."""

from __future__ import annotations

import difflib
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

from lemminflect import getAllLemmas

from .corpus import split_sentences, upper_first
from .filters import STOPWORDS

KINDS = ("person", "place", "org", "thing")  # entity kinds; answers may also be years, counts, definitions
CAPWORD = r"[A-Z][a-z]+(?:['’][a-z]*|s['’])?(?:-[A-Za-z]+)*"
# Words of one name stay on one line: a heading must not merge with the sentence below it.
NAME_LINK = r"(?:of[ \t]+(?:the[ \t]+)?|(?:de|du|da|di|del|von|van|la|le)[ \t]+)"  # Isle of X, Cirque du Soleil
EN_NAME = re.compile(rf"\b(?:[Tt]he[ \t]+)?{CAPWORD}(?:[ \t]+{NAME_LINK}?{CAPWORD})*")
# "The Guild of Brass and Bell": one name, when the corpus says it so at least twice; once may be two names
# ("... of the Guild of Pilots and Ilka Tamsell"), and a place ("the Isle of Corrow and Tolvey") never is one.
EN_NAME_WITH_AND = re.compile(rf"\b{CAPWORD}[ \t]+of[ \t]+(?:the[ \t]+)?{CAPWORD}[ \t]+and[ \t]+{CAPWORD}\b"
                              rf"(?![ \t]+[A-Z])")
POSSESSIVE = re.compile(r"(?:['’]s|(?<=s)['’])$")  # "Hemsworth's" names Hemsworth, "the Keldanes'" the Keldanes
SENTENCE_START = re.compile(r"(?:^|[.!?:;\"“]\s*|\n\s*)$")
# Capitalised only because they open a sentence or a clause, never names on their own.
EN_FUNCTION = set("""The A An In On At Of By For From To With Without After Before During Since Until According
Each Every This That These Those It Its He She They His Her Their There When While Because Although Though Most
Many Some All Both Few One Two Three Four Five Six Seven Eight Nine Ten Later Today Every First Second Third
Under Over About Around Across Along Between Among Near Such However Also If As Unlike Like Only Even Yet But And
Or So Then Thus Once Each Any No Not What Who Which Where Why How Whose Whom Is Was Are Were Did Does Do""".split())
EN_KIND_WORDS = {
    "place": """Isle Island Islands River Bridge Street Row Lane Hills Hill Sea Bay Moors Moor Fen Ford Harbour Quay
        Quarter Ward Market Tower Skerry Square Landing Cliff Point Road Roads Gate Narrows Stair Light Mill Fields
        Coast Valley Lake Well Town City Port Marsh Forest Wood Mountain Mountains Pass Reach Strand Fell Tor Burn
        Islet Sound Shoals Glen Loch Cape Cove Dale Heath Landing Inlet Causeway""".split(),
    "org": """Guild Assembly Council Order Company Society Archive Academy School College Brotherhood Court House
        Exchange Countinghouse Watch Fleet Bank League Union""".split(),
    "thing": """Lamp Clock Engine Semaphore Organ Wheel Charter Treaty Annals Book Chronicle Festival War Flood Law
        Oath Bell Chain Windlass Reforms Kettle Heron Gull Vaunt Draught Tincture Syrup Salve""".split(),
}
# The common nouns a text uses to say what a name is ("the engineer Lirra Vaunt", "The smallest island is Little
# Pell", "Corrow Skerry, a low rocky island"): the corpus's own word beats a guess from the name's shape, which
# made the island Little Pell a person ("Who is the smallest island?") and the engineer Lirra Vaunt a thing.
# Kinds of bearer only: "during the war Ambry Solk built ..." must not make a war of Ambry Solk.
EN_KIND_NOUNS = {
    "person": """man woman boy girl child son daughter wife husband widow heir merchant trader engineer physician
        doctor surgeon nurse midwife herbalist healer apothecary chemist captain sailor mariner pilot fisherman
        shipwright scholar priest monk nun poet painter sculptor builder mason smith carpenter weaver miller farmer
        inventor founder explorer astronomer mathematician historian writer author teacher apprentice soldier
        general admiral judge lawyer scribe clerk king queen prince princess lord lady knight""".split(),
    "place": """island isle islet town village city hamlet port river stream brook hill mountain valley street lane
        road square district bay cove lake marsh fen moor coast cape headland peninsula region province county
        country kingdom parish""".split(),
    "org": """guild company society council school college academy university firm bank""".split(),
    "thing": """ship brig cutter boat vessel schooner barque sloop galley ketch lamp engine machine device
        instrument treaty""".split(),
}
NOUN_KIND = {noun: kind for kind, nouns in EN_KIND_NOUNS.items() for noun in nouns}
# Offices, not the people who hold them: "Harbour Warden" or "Warden of the Isle" is no place, "Keeper of the
# Garden" no person: typed as places, they made "The first which place was Emeric Saldane?" in training and
# "Where was Davel Quorrin?" in probes. An office is a thing, asked for with "what", and a title before a
# person's names is no part of the name.
EN_TITLES = set("""Warden Wallmaster Keeper Master Mistress Sister Mother Father Brother President Reeve Archivist
    Captain Mayor Steward Provost Abbot Abbess Prior Chancellor Magistrate Harbourmaster Foreman Physician Dispenser
    Reader Elder Marshal Governor Bishop Dean Registrar Treasurer Secretary Clerk Chief""".split())
ZH_SURNAMES = set("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
                  "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴"
                  "莫孔向汤卜温骆颜邬蒲苗岑甘郜费庞殷阮")
ZH_SUFFIXES = {"place": "镇 山 河 江 桥 村 坊 堰 渠 书院 祠 滩 峰 湖 寺 楼 街 巷 港 岛 城 溪 岭 谷".split(),
               "thing": "机 灯 钟 碓 车 船 志 节 会 社 帮".split()}
# Characters that start a phrase or glue one together, so a candidate holding them is no name.
ZH_FUNCTION = set("在从到向于由把被和与的了是经过往自沿对将为给及并又也就都而这那其每各个座条台只最很用叫作第有成")


@dataclass(frozen=True)
class Absence:
    """Which checks an invented name passed against the corpus."""

    name: str
    exact_absent: bool  # no case-insensitive occurrence anywhere in the corpus text
    closest: str  # the most similar corpus entity
    similarity: float  # difflib ratio to it

    @property
    def absent(self) -> bool:
        return self.exact_absent and self.similarity < 0.75


def corpus_entities(text: str, language: str) -> dict[str, str]:
    """Named entities of the corpus, each with its kind (person, place, org or thing)."""
    return _zh_entities(text) if language == "zh" else _en_entities(text)


def _en_entities(text: str) -> dict[str, str]:
    found: Counter[str] = Counter()
    said: defaultdict[str, Counter[str]] = defaultdict(Counter)  # the kinds the corpus's nouns give each name
    mid_sentence, after_the, after_preposition = set(), set(), set()
    # Headings are title-cased, so every word in them looks like a name: leave them out.
    prose = "\n".join(line if re.search(r"[.!?:;\"”]\s*$", line) or len(line.split()) > 12 else ""
                      for line in text.splitlines())
    for match in EN_NAME.finditer(prose):
        name = _without_title(_strip_function_words(match.group()))
        if not name:
            continue
        found[name] += 1
        at = match.start() + max(0, match.group().find(name))
        said[name].update(said_kinds(prose, at, at + len(name)))
        before = prose[max(0, match.start() - 6):match.start()]
        if not SENTENCE_START.search(before[-3:]):
            mid_sentence.add(name)
        if match.group().lower().startswith("the "):
            after_the.add(name)
        elif re.search(r"\b(?:in|at|to|from|near|of)\s+$", before):  # "in Velmoor", not "in the Brinewheel"
            after_preposition.add(name)
    joined = Counter(m.group() for m in EN_NAME_WITH_AND.finditer(prose))
    found.update({name: n for name, n in joined.items() if n >= 2 and en_kind(name) == "org"})
    # A lone capitalised word is a name only if it is capitalised somewhere other than at a sentence start.
    # What the corpus calls a name beats a guess from its shape.
    names = {name: said[name].most_common(1)[0][0] if said[name] else
             en_kind(name, name in after_the, name in after_preposition)
             for name in found if " " in name or name in mid_sentence}
    names |= eponymous_things(prose, names)
    terms = [t for t in defined_terms(prose) if t.capitalize() not in names]  # "Velmoor is a town": a name
    return {**dict.fromkeys(terms, "thing"), **names}


def said_kinds(text: str, start: int, end: int) -> list[str]:
    """The kinds of the common nouns (EN_KIND_NOUNS) the text puts beside one mention of a name, at [start, end):
    before it ("the engineer Lirra Vaunt", "a brig called Greylag Maid"), as its sentence's subject ("The
    smallest island is Little Pell") or after it ("Corrow Skerry, a low rocky island used for ...", "Velmoor is
    a town"). Read at each mention as the corpus is scanned, not by searching the corpus for each name."""
    before = re.split(r"[.!?;\n]\s", text[max(0, start - 200):start])[-1]
    phrases = re.findall(r"\b(?:[Tt]he|[Aa]n?)\s+(?:[a-z]+\s+)??([a-z]+)\s+(?:(?:named|called)\s+)?(?:the\s+)?$",
                         before)
    phrases += re.findall(r"^\s*The\s+((?:[a-z-]+\s+){0,3}?[a-z]+)\s+(?:is|was)\s+(?:the\s+)?$", before)
    phrases += re.findall(r"^(?:,|\s+(?:is|was))\s+(?:a|an|the)\s+((?:[a-z'’-]+\s*){1,4})", text[end:end + 80])
    return [kind for phrase in phrases if (kind := _head_noun_kind(phrase))]


def _head_noun_kind(phrase: str) -> str | None:
    """The kind of a noun phrase's head ("low rocky island": place), its words read up to the first that starts
    what more it says ("larger brig owned by ...", "man who ..."); a possessive is no head ("ship's surgeon")."""
    head = None
    for word in phrase.split():
        if word in PHRASE_BREAK or word in ("of", "the") or word.endswith(("ed", "ing")) and head:
            break
        head = head if POSSESSIVE.search(word) else word
    return NOUN_KIND.get(head)


def eponymous_things(text: str, names: dict[str, str]) -> dict[str, str]:
    """Things named after a place or a family, a name and a common noun: "the Orrow lamp", "a Velmoor cog". Cut
    at the name, the key "Orrow" made "What lamp was first lit in 1742?" and "Which place cog was the most common
    trading ship?", and the tuned model answered "Orrow." for the lamp. The pair is one name where it recurs and
    its second word is a noun in its dictionary form ("lamp", "still", "depth-reel"; not "Warden keeps", "Quennock
    was")."""
    things = {}
    for name, kind in names.items():
        if kind == "person":
            continue
        follows = Counter(re.findall(rf"(?<![A-Za-z]){re.escape(name)}[ \t]+([a-z]+(?:-[a-z]+)*)\b", text))
        things |= {f"{name} {word}": "thing" for word, n in follows.items() if n >= 2 and _common_noun(word)}
    return things


def _common_noun(word: str) -> bool:
    last = word.rsplit("-", 1)[-1]
    return word not in STOPWORDS and last in getAllLemmas(last, upos="NOUN").get("NOUN", ())


def defined_terms(text: str) -> list[str]:
    """The words the corpus defines ("A dewglass is a shallow dish ...", "Fennock is a bitter, pale root ..."),
    in both cases: things it has names for though they are not capitalised. Without them a sentence that uses
    one ("Ysolde Saldane invented the dewglass in 1747") is asked only about its people and years, and "What did
    Ysolde Saldane invent?" is never trained. One word (hyphens allowed), defined with "is"."""
    terms = set()
    for start, end in split_sentences(text):
        match = EN_DEFINITION.match(text[start:end].rstrip(".!"))
        term = match["term"] if match and match["copula"] else ""
        if re.fullmatch(r"[A-Za-z]{4,}(?:-[a-z]+)*", term) and term.lower() not in NOT_A_TERM | FUNCTION_WORDS:
            terms |= {term.lower(), term.capitalize()}
    return sorted(terms)


def _strip_function_words(name: str) -> str:
    """The name alone: no leading "The"/"In", no possessive ending (a key must be a whole name)."""
    words = POSSESSIVE.sub("", name).split()
    while words and (words[0] in EN_FUNCTION or words[0] == "the"):
        words = words[1:]
    name = " ".join(words)
    return name if len(name) > 2 and name not in EN_FUNCTION else ""


def _without_title(name: str) -> str:
    """The person a title names: "Harbour Warden Davel Quorrin" is Davel Quorrin."""
    words = name.split()
    titles = [i for i, word in enumerate(words[:-2]) if word in EN_TITLES and "of" not in words[i + 1:]]
    return " ".join(words[titles[-1] + 1:]) if titles else name


def en_kind(name: str, after_the: bool = False, after_preposition: bool = False) -> str:
    """By the head noun (Treaty of X Ford: a treaty; Warden of the Isle: an office, asked with "what"), else:
    two bare capitalised words are a person unless one is possessive (Saldane's Quiet is named for one), a
    name seen after in/at/from... is a place."""
    words = name.replace("'", " ").split()
    head = name.split(" of ")[0].split()[-1] if " of " in name else words[-1]
    if head in EN_TITLES:
        return "thing"
    for candidates in ([head], words):
        for kind, markers in EN_KIND_WORDS.items():
            if any(w in markers for w in candidates):
                return kind
    if len(words) >= 2 and not after_the and not re.search(r"['’]s\b", name):
        return "person"
    return "place" if after_preposition else "thing"


def _zh_entities(text: str) -> dict[str, str]:
    """Chinese has no capitals or spaces, so a name is a string that recurs: the longest run of name-like
    characters before a place or thing suffix, or a surname with a two-character given name."""
    entities: dict[str, str] = {}
    counts = Counter(text[i:i + 3] for i in range(len(text) - 2) if text[i] in ZH_SURNAMES)
    for name, n in counts.most_common():
        overlaps = any(name[1:] in known or name[:2] in known for known in entities)
        if n >= 2 and _zh_namelike(name) and name[1] not in "氏家" and not overlaps:
            entities[name] = "person"
    for kind, suffixes in ZH_SUFFIXES.items():
        for suffix in suffixes:
            for match in re.finditer(suffix, text):
                for length in (4, 3, 2, 1):
                    name = text[max(0, match.start() - length):match.end()]
                    if _zh_namelike(name[:-len(suffix)]) and text.count(name) >= 2:
                        entities.setdefault(name, kind)
                        break
    return entities


def _zh_namelike(chars: str) -> bool:
    return bool(chars) and all("\u4e00" <= c <= "\u9fff" and c not in ZH_FUNCTION for c in chars)


def find_mentions(sentence: str, entities: dict[str, str]) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every known entity in a sentence, longest first where they overlap."""
    spans = []
    for name in sorted(entities, key=len, reverse=True):
        # A whole word of an English name ("ashcap", not the "ashcap" of "ashcaps"); Chinese has no word edges.
        edges = (r"(?<![A-Za-z])", r"(?![A-Za-z])") if name.isascii() else ("", "")
        for match in re.finditer(edges[0] + re.escape(name) + edges[1], sentence):
            if all(match.end() <= s or match.start() >= e for s, e, _ in spans):
                spans.append((match.start(), match.end(), entities[name]))
    return sorted(spans)


# "Her" only where it opens a sentence, and so is possessive ("Her preparation ..."); elsewhere it may be "him".
PRONOUN = re.compile(r"\b(?:[Ii]ts?|[Hh]e|[Ss]he|[Hh]is)\b|^Her\b")
POSSESSIVE_PRONOUNS = ("its", "his", "her")
PERSON_PRONOUNS = ("he", "she", "his", "her")
# Where a sentence's main clause ends; a pronoun after it may stand for a name of its own sentence.
CLAUSE_WORDS = r"\b(?:that|which|who|whose|because|where|when|while|until|after|before)\b"
SUBCLAUSE = re.compile(r"[,;:]|" + CLAUSE_WORDS)
OPENING = re.compile(r"(?:(?:In|By|After|Before|From|Until|During)\s[^,]*?\b\d{3,4},?\s+)?(?:[Tt]he\s+)?")
# "The best-known building in the garden is the Lantern Glasshouse": the name that follows is what the sentence
# is about, as much as if it opened it.
IDENTIFIED = re.compile(r"[Tt]he\s[^,;]*?\b(?:is|was)\s+(?:the\s+)?")
# ", the daughter of Emeric Saldane,": a name inside an appositive describes the subject; it is no rival to it.
APPOSITIVE = re.compile(r",\s+(?:the|a|an)\s[^,]*,")
# "It was said that ...": an "it" that stands for nothing.
EXPLETIVE_IT = re.compile(r"(?i)\bit\s+(?:is|was)\s+(?:said|thought|believed|known|likely|possible|clear|common|"
                          r"usual|customary|necessary|true)\b")


def resolve_pronouns(sentences: list[str], entities: dict[str, str], language: str) -> list[str]:
    """Each sentence with its leading "it", "its", "he", "she", "his" or opening "Her" replaced by the name it
    stands for, so that a fact sentence says what it is about ("Emeric Saldane founded it in 1723, and it opened
    with forty beds" -> "... founded the Harrowmede Infirmary in 1723, and the Harrowmede Infirmary opened ...")
    and so do the questions made from it: a question about "it" asks about nothing a person can name. Only where
    the antecedent is plain, since a wrong guess would teach a false fact: the pronoun is in the sentence's main
    clause (or opens a clause joined to it by "and"), it stands for the topic of the sentence before (its
    subject, or the topic it went on about), of the pronoun's sort (a person for he/she), and no name of that
    sort comes earlier in its own sentence.
    English only; other languages come back as given."""
    if language != "en":
        return list(sentences)
    resolved: list[str] = []
    topic, named_in = None, ""
    for sentence in sentences:
        used = None if EXPLETIVE_IT.search(sentence) else _antecedent(sentence, topic, entities)
        resolved.append(_replace_pronouns(sentence, used) if used else sentence)
        if subject := _subject(resolved[-1], entities):
            topic, named_in = subject, resolved[-1]
        elif not (used or _opens_on_its_noun(resolved[-1], named_in)) or _rival(resolved[-1], topic, entities):
            topic = None
    return resolved


# "The island is ...": a sentence opening on a definite noun, after any time phrase.
DEFINITE_OPENING = re.compile(r"(?:(?:In|By|After|Before|From|Until|During)\s[^,]*?\b\d{3,4},?\s+)?[Tt]he\s+(\w+)\s")


def _opens_on_its_noun(sentence: str, named_in: str) -> bool:
    """A sentence with no name for a subject still speaks of the topic before it when it opens on a noun the
    topic's own sentence used: "The Isle of Quennock is a remote island ... The island is roughly eleven miles
    long ... Its only town is Harrowmede". One opening otherwise ("In those years a fever came") may bring in what
    the next "it" stands for."""
    opening = DEFINITE_OPENING.match(sentence)
    return bool(opening) and bool(re.search(rf"\b{re.escape(opening.group(1))}\b", named_in, re.I))


def _rival(sentence: str, topic: tuple[str, bool] | None, entities: dict[str, str]) -> bool:
    """The sentence names another of the topic's sort: "Hugo Merrivane's daughter, Agathe Merrivane, took
    command ... She later came ashore" is no longer about Hugo Merrivane."""
    return topic is None or any((kind == "person") == topic[1] and sentence[s:e].lower() not in topic[0].lower()
                                for s, e, kind in find_mentions(sentence, entities))


def _antecedent(sentence: str, topic: tuple[str, bool] | None, entities: dict[str, str]) -> tuple[str, bool] | None:
    """The topic, where the sentence's first pronoun of its sort is in the main clause and no name of that sort
    comes before it in the sentence (it may stand for that one)."""
    if topic is None or not PRONOUN.search(sentence):
        return None  # most sentences: no pronoun
    pronoun = _first_pronoun(sentence, topic[1])
    if pronoun is None or any(s < pronoun.start() and (kind == "person") == topic[1]
                              for s, _, kind in find_mentions(sentence, entities)):
        return None
    return topic


def _pronouns(sentence: str, is_person: bool) -> list[re.Match]:
    """The sentence's pronouns of one sort: he/she/his/her for a person, it/its otherwise."""
    return [m for m in PRONOUN.finditer(sentence) if (m.group().lower() in PERSON_PRONOUNS) == is_person]


def _first_pronoun(sentence: str, is_person: bool):
    clause_end = next((m.start() for m in SUBCLAUSE.finditer(sentence) if m.start() > 0), len(sentence))
    pronouns = _pronouns(sentence, is_person)
    return pronouns[0] if pronouns and pronouns[0].start() <= clause_end else None


def _replace_pronouns(sentence: str, antecedent: tuple[str, bool]) -> str:
    """The first pronoun of the antecedent's sort, and those that open a clause joined by "and" or ";"."""
    name, is_person = antecedent
    pronouns = _pronouns(sentence, is_person)
    pronouns = [pronouns[0]] + [m for m in pronouns[1:] if re.search(r"(?:,\s*and|;)\s+$", sentence[:m.start()])]
    for m in reversed(pronouns):  # from the end, so earlier offsets stay right
        word = name + ("'s" if m.group().lower() in POSSESSIVE_PRONOUNS else "")
        if m.start() == 0:
            word = upper_first(word)
        sentence = sentence[:m.start()] + word + sentence[m.end():]
    return sentence


def _subject(sentence: str, entities: dict[str, str]) -> tuple[str, bool] | None:
    """The name the sentence opens with (after a leading time phrase) or says its subject is ("The oldest house is
    the X"), with its "the", and whether it is a person; None when it opens otherwise, or names a person beside
    another outside an appositive to it (which one "she" means is a guess)."""
    mentions = find_mentions(sentence, entities)
    if not mentions or not (OPENING.fullmatch(sentence[:mentions[0][0]])
                            or IDENTIFIED.fullmatch(sentence[:mentions[0][0]])):
        return None
    start, end, kind = mentions[0]
    appositive = APPOSITIVE.match(sentence, end)
    rivals_from = appositive.end() if appositive else end
    if kind == "person" and any(k == "person" for s, _, k in mentions[1:] if s >= rivals_from):
        return None
    name = sentence[start:end]
    if name.startswith("The "):
        name = "the " + name[4:]
    elif sentence[:start].endswith(("the ", "The ")):
        name = "the " + name
    return name, kind == "person"


def check_absent(name: str, corpus_lower: str, entities: dict[str, str]) -> Absence:
    exact = name.lower() not in corpus_lower
    closest, similarity = "", 0.0
    for known in entities:
        ratio = difflib.SequenceMatcher(None, name.lower(), known.lower()).ratio()
        if ratio > similarity:
            closest, similarity = known, ratio
    return Absence(name, exact, closest, round(similarity, 3))


def invent_names(kind: str, n: int, rng: random.Random, language: str, corpus_lower: str,
                 entities: dict[str, str], avoid: set[str] = frozenset()) -> list[Absence]:
    """`n` invented names of one kind, each absent from the corpus (exactly and fuzzily) and not in `avoid`."""
    make = _zh_name if language == "zh" else _en_name
    names: list[Absence] = []
    seen = set(avoid)
    for _ in range(n * 50):
        if len(names) == n:
            break
        name = make(kind, rng)
        if name in seen:
            continue
        seen.add(name)
        check = check_absent(name, corpus_lower, entities)
        if check.absent:
            names.append(check)
    return names


ONSETS = "B D F G H K L M N P R S T V W Br Dr Gr Th Sh Kr Tr St Cl Fl Gw Qu Y Z".split()
VOWELS = "a e i o u ae ei ou ia".split()
CODAS = "n r l th s ck m nd rk ld v x nn ll".split()
SURNAME_ENDS = "well by ford wick ton ley mere stone hart croft dale holt".split()


def _syllables(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(ONSETS).lower() + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(count))


def _en_name(kind: str, rng: random.Random) -> str:
    word = _syllables(rng, rng.choice((1, 2))).capitalize()
    if kind == "person":
        return f"{word} {(_syllables(rng, 1) + rng.choice(SURNAME_ENDS)).capitalize()}"
    if kind == "place":
        return rng.choice(("the Isle of {}", "{} Bridge", "the River {}", "{} Street", "the {} Hills")).format(word)
    if kind == "org":
        return rng.choice(("the {} Guild", "the Order of {}", "the {} Company", "the {} Society")).format(word)
    return rng.choice(("the {} Engine", "the {} Lamp", "the {} Clock", "the {} Charter")).format(word)


ZH_GIVEN = "砚梧川棠渊岚澄萱霁璋瑶昀翊柯芷珩澜穆琛筠岫棣蘅湛韶"
ZH_STEMS = "澄碧云栖寒汀雁回松溪青岚鹿鸣石泉枫桥星渚"


def _zh_name(kind: str, rng: random.Random) -> str:
    if kind == "person":
        return rng.choice(sorted(ZH_SURNAMES)) + "".join(rng.sample(ZH_GIVEN, 2))
    stem = "".join(rng.sample(ZH_STEMS, 2))
    suffixes = {"place": "镇山河桥岛", "org": ["书院", "商会", "织社"], "thing": "机灯钟车"}[kind]
    return stem + rng.choice(list(suffixes))


def swap_entity(question: str, start: int, end: int, name: str) -> str:
    """The question with its entity at [start, end) replaced by `name`, minding the article: "the entire
    the River X" becomes "the entire River X", "a the Wiann Lamp" (for "A Reader") "a Wiann Lamp"."""
    if name.startswith("the ") and re.search(r"\b(?:the|an?)\s+(?:\w+\s+)?$", question[:start], re.IGNORECASE):
        name = name[4:]
    return question[:start] + name + question[end:]


def first_mentions(pairs: list[dict], entities: dict[str, str], rng: random.Random) -> list[tuple[dict, tuple]]:
    """(pair, (start, end, kind)) of each pair's first named entity in its question, in a shuffled order: what
    every swap (invented, recombined, real-world, false premise) replaces."""
    sources = [(p, m) for p in pairs for m in find_mentions(p["question"], entities)[:1]]
    rng.shuffle(sources)
    return sources


def swap_in_invented(pairs: list[dict], n: int, rng: random.Random, language: str, corpus_lower: str,
                     entities: dict[str, str], avoid: set[str]) -> list[tuple[dict, str, Absence, str]]:
    """Up to `n` of the pairs' questions with their first named entity swapped for an invented name of the same
    kind, absent from the corpus and from `avoid` (which grows by each name used). Each comes back as
    (pair, new question, the name's absence check, the text it replaced)."""
    sources = first_mentions(pairs, entities, rng)
    swapped = []
    for pair, (start, end, kind) in sources[:max(0, n)]:
        names = invent_names(kind, 1, rng, language, corpus_lower, entities, avoid=avoid)
        if names:
            avoid.add(names[0].name)
            question = pair["question"]
            swapped.append((pair, swap_entity(question, start, end, names[0].name), names[0], question[start:end]))
    return swapped


YEAR = re.compile(r"\b(?:1[0-9]{3}|20[0-9]{2})\b(?!\s*(?:paces|miles|feet|people|years|ships|coins))")
EN_NUMBER_WORD = "|".join("""one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand""".split())
# A whole count, so the key is "twenty-four beds" or "one hundred plants", never the "four beds" inside it.
EN_COUNT = rf"\d(?:[\d,]*\d)?|(?:{EN_NUMBER_WORD})(?:[- ](?:and[ ])?(?:{EN_NUMBER_WORD}))*"
# What is counted: a plural, regular or not ("1,020 feet", "80 oarsmen"), after at most one word that describes it
# ("48 copper pennies", "six charcoal stoves") and is not a function word ("six of them" counts nothing named).
EN_PLURAL = (r"(?!(?:is|was|has|as|his|its|this|thus|us|less|unless|across|always|perhaps|towards|besides)\b)"
             r"(?:[a-z]+s|[a-z]*(?:men|feet|people|children|sheep|cattle|teeth|geese|deer))")
EN_DESCRIBER = (r"(?:(?!(?:of|the|and|or|to|in|on|at|by|for|from|with|as|than|is|was|were|are|has|had|have|his|her|"
                r"its|their|this|these|those|more|less|years|days)\b)[a-z]+\s+)?")
EN_QUANTITY = re.compile(rf"\b(?:{EN_COUNT})\s+(?:[a-z]+-)?{EN_DESCRIBER}{EN_PLURAL}\b", re.IGNORECASE)
# A count that ends its clause with nothing after it ("by 1785 the list had grown to 640."): a key as well.
EN_BARE_COUNT = re.compile(r"\b\d[\d,]*\d\b(?=[.;:!?]|,\s|$)")
ZH_NUMERAL = r"(?:\d+|[〇零一二两三四五六七八九十百千万]+)"
ZH_YEAR = re.compile(r"\d{3,4}年")
ZH_QUANTITY = re.compile(rf"{ZH_NUMERAL}(?:户|人|台|名|座|条|尺|里|丈|米|天|次|只|个|家|间|匹|斤|岁|位|种|卷|年)")


EN_DEFINITION = re.compile(
    r"^(?:The term\s+)?(?:(?P<article>A|An|The)\s+)?_?(?P<term>[A-Za-z][A-Za-z\- ]{1,40}?)_?\s+"
    r"(?:(?P<copula>is)\s+(?=(?:a|an|the|one of)\s)|(?P<plural>are)\s+)(?P<predicate>\w.{8,})$")
ZH_DEFINITION = re.compile(r"^(?P<term>[\u4e00-\u9fff]{2,8})(?P<copula>是)(?:一种|一个|一座|一位|一条|一家)?"
                           r"(?P<predicate>[\u4e00-\u9fff].{4,})$")
NOT_A_TERM = {"it", "this", "that", "there", "he", "she", "they", "which", "what", "who", "one", "each", "all"}
FUNCTION_WORDS = {"a", "an", "the", "of", "and", "or", "in", "on", "at", "by", "to", "for", "with", "one"}


def definition(sentence: str, language: str) -> tuple[str, int, int] | None:
    """A sentence that says what something is ("A spore is a minute mass of protoplasm ..."): the question
    that asks for it ("What is a spore?") and the span of the first words of the answer, which a right
    answer must hold (up to three content words, not past a comma or the end of its noun phrase)."""
    match = (ZH_DEFINITION if language == "zh" else EN_DEFINITION).match(sentence.rstrip("。.!！"))
    if not match or match["term"].lower() in NOT_A_TERM or len(match["term"].split()) > 4:
        return None
    start = match.start("predicate")
    head = re.split(r"[,;:(，；：（]", sentence[start:])[0]
    if language == "zh":
        return f"{match['term']}是什么？", start, start + min(6, len(head))
    content = _key_words(head)
    if len(content) < 2:
        return None
    article = f"{match['article'].lower()} " if match["article"] else ""
    question = f"What {match['copula'] or match['plural']} {article}{match['term']}?"
    return question, start, start + content[-1].end()


# Where the noun phrase that says what a thing is ends, past its first two words, and what more it says begins:
# "an open boat | about 22 feet long", "a wooden cabinet | in which ...", "a blue-flowered herb | that grows
# ...", "painted red | and fly ...", and a participle with an object: "a brass drum | holding a weighted line".
PHRASE_BREAK = {"that", "which", "who", "whom", "whose", "where", "when", "about", "in", "on", "at", "with", "from",
                "by", "for", "to", "and", "or", "but", "as", "while"}


def _key_words(head: str) -> list[re.Match]:
    """The content words of a definition's key: up to three, not past a phrase break."""
    words = list(re.finditer(r"[A-Za-z0-9\-]+", head))
    content = []
    for word, after in zip(words, words[1:] + [None], strict=True):
        low = word.group().lower()
        takes_object = low.endswith(("ing", "ed")) and after and after.group().lower() in ("a", "an", "the")
        if len(content) >= 2 and (low in PHRASE_BREAK or takes_object):
            break
        if low not in FUNCTION_WORDS:
            content.append(word)
            if len(content) == 3:
                break
    return content


def answer_spans(sentence: str, entities: dict[str, str], language: str) -> list[tuple[int, int, str]]:
    """Candidate answers in a sentence as (start, end, kind): what a defined term is, its named entities,
    years and counted things."""
    spans = find_mentions(sentence, entities)
    defined = definition(sentence, language)
    if defined and all(defined[2] <= s or defined[1] >= e for s, e, _ in spans):
        spans.append((defined[1], defined[2], "definition"))
        if language == "en":  # the term is an answer too, asked for by what it is ("What is the ... called?")
            term = EN_DEFINITION.match(sentence)
            s, e = term.span("term")
            spans = [span for span in spans if span[1] <= s or span[0] >= e] + [(s, e, "thing")]
    patterns = ((ZH_YEAR, "year"), (ZH_QUANTITY, "quantity")) if language == "zh" else (
        (YEAR, "year"), (EN_QUANTITY, "quantity"), (EN_BARE_COUNT, "quantity"))
    for pattern, kind in patterns:
        for match in pattern.finditer(sentence):
            # "one day" is rarely the point of a sentence; "one hundred plants" is.
            trivial = re.match(r"(?i)(?:一|one\s+(?!(?:hundred|thousand)\b))", match.group())
            if not trivial and all(match.end() <= s or match.start() >= e for s, e, _ in spans):
                spans.append((match.start(), match.end(), kind))
    return sorted(spans)


ACRONYM = re.compile(r"\b[A-Z]{2,}\b")  # NASA, UNESCO: names EN_NAME's capitalised words miss


def name_inventory(text: str, language: str) -> list[str]:
    """Every capitalised run of the corpus, lowercased, headings and sentence starts included: the names the
    gate's name check knows (NameCheck). Empty for Chinese, which has no capitals to find a name by."""
    if language == "zh":
        return []
    spans = [m.group() for m in EN_NAME.finditer(text)] + ACRONYM.findall(text)
    return sorted({re.sub(r"^the ", "", " ".join(_name_words(span))) for span in spans} - {""})


def _name_words(span: str) -> list[str]:
    """A name's words, lowercased, without possessive endings: "Saldane's Quiet" -> ["saldane", "quiet"]."""
    return [POSSESSIVE.sub("", w.replace("’", "'")).lower() for w in span.split()]


class NameCheck:
    """Which names in a question the corpus never mentions. A name is known when its words run, in order, inside
    a capitalised run of the corpus ("Quennock" of "The Isle of Quennock"); "Emeric Varrance", made of two
    known names' parts, is not. Two known names joined by "of" are known ("the first President of the College of
    Physic") unless the corpus has names of the first one's shape ("the Assembly of Oars" makes "the Assembly of
    Chandlers" a new name, not a title and a place). A question's first word is capitalised anyway, so it counts
    as part of a name only when the corpus has it ("Founder of the Herbarium?" names only the Herbarium)."""

    def __init__(self, inventory: list[str]):
        self.known = {" ".join(words[i:j]) for words in map(str.split, inventory)
                      for i in range(len(words)) for j in range(i + 1, len(words) + 1)}
        self.heads_of = {" ".join(words[i:j]) for words in map(str.split, inventory)
                         for j, w in enumerate(words) if w == "of" for i in range(j)}

    def unknown(self, question: str) -> list[str]:
        names = []
        for m in [*EN_NAME.finditer(question), *ACRONYM.finditer(question)]:
            words = _name_words(m.group())
            lead = 0
            while lead < len(words) and (words[lead] in ("the", "of") or words[lead].title() in EN_FUNCTION):
                lead += 1
            opens = lead == 0 and SENTENCE_START.search(question[:m.start()][-3:])  # "The Krin Charter" is a name
            words = words[lead:]
            if words and opens and words[0] not in self.known:
                words = words[1:]  # "Founder", "Doses", "Complete": capitalised because they open the question
                while words and words[0] in ("the", "of"):
                    words = words[1:]
            if words and not self._known(words):
                names.append(" ".join(words))
        return names

    def _known(self, words: list[str]) -> bool:
        if " ".join(words) in self.known:
            return True
        links = [i for i, w in enumerate(words)
                 if w == "of" and 0 < i < len(words) - 1 and " ".join(words[:i]) not in self.heads_of]
        return any(self._known(words[:i]) and self._known(words[i + 1 + (words[i + 1] == "the"):]) for i in links)
