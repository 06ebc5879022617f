"""Questions made from a sentence's own structure, and the key-first answer."""

import random

import pytest

from selfinstruct.filters import check_question
from selfinstruct.questions import (
    described_question,
    key_first_answer,
    other_side_question,
    predicate_question,
    reworded_question,
    template_question,
    template_questions,
    trimmed_question,
    varied_question,
)


@pytest.mark.parametrize("sentence, key, kind, expected", [
    ("Orric Velm settled at the Twinwater in 1041.", "Orric Velm", "person", "Who settled at the Twinwater in 1041?"),
    ("The Long Arm was finished in the year 1206.", "Long Arm", "thing", "What was finished in the year 1206?"),
    ("The village took the name Velmoor in 1098.", "1098", "year", "The village took the name Velmoor in which year?"),
    ("A second river, the River Ambrel, joins the Calvane.", "River Ambrel", "place", None),
    ("苍箬镇由猎户卜怀渊在1186年建立。", "卜怀渊", "person", "苍箬镇由猎户谁在1186年建立？"),
    ("卜怀渊带着十三户人家从山外迁来。", "十三户", "quantity", "卜怀渊带着多少户人家从山外迁来？"),
    ("Maud Orrow ran the Stillroom for twenty-six years.", "twenty-six years", "quantity",
     "Maud Orrow ran the Stillroom for how many years?"),
    ("By 1785 the list of the garden's plants had grown to 640.", "640", "quantity",
     "By 1785 the list of the garden's plants had grown to how many?"),
    # A name the sentence labels with a kind of bearer is asked for by it ("The engineer who invented ...?" before).
    ("The engineer Tobin Gale invented the crane in 1467.", "Tobin Gale", "person",
     "Which engineer invented the crane in 1467?"),
    ("They sailed aboard the brig Heron Maid.", "Heron Maid", "thing", "They sailed aboard which brig?"),
])
def test_template_questions(sentence, key, kind, expected):
    start = sentence.index(key)
    language = "zh" if "。" in sentence else "en"
    assert template_question(sentence, start, start + len(key), kind, language) == expected


@pytest.mark.parametrize("sentence, key, kind, expected", [
    # The name asked for by what the sentence says it is: an appositive after it, before it, a copula either way.
    ("Hugo Merrivane also founded the Mariners' Bed, a fund that paid for sick sailors.", "Mariners' Bed", "thing",
     "What was the fund that paid for sick sailors called?"),
    ("The Herbarium was begun in 1741 by Tobias Varrance, the nephew of Odile Varrance, and by 1790 it held more.",
     "Tobias Varrance", "person", "Who was the nephew of Odile Varrance?"),
    ("The southern hill, Owlsgate Fell, is lower and boggier.", "Owlsgate Fell", "place",
     "What is the southern hill called?"),
    ("The first Warden of the Isle was Emeric Saldane, who held the office from 1716.", "Emeric Saldane", "person",
     "Who was the first Warden of the Isle?"),
    ("The Dunmoor still is a copper distilling apparatus with three chambers, used to draw spirit.", "Dunmoor still",
     "thing", "What is the copper distilling apparatus with three chambers called?"),
    ("Harbour Warden is the elected ruler of Velmoor and serves for a term of nine years.", "Harbour Warden",
     "org", "What is the elected ruler of Velmoor called?"),
    # Not descriptions: an opening phrase, a list of names, a clause, one too short to pick the name out, a year.
    ("On the Festival of Nets, the fishermen of Velmoor hang their nets across Tallow Street.", "Festival of Nets",
     "thing", None),
    ("The Brinewheel, the Tamsell Lamps and the Groaning Bell were built to make the Narrows safer.", "Brinewheel",
     "thing", None),
    ("Under Davel Quorrin, the population of Velmoor rose from about 18,000.", "Davel Quorrin", "person", None),
    ("The Lark of Cassmoor, a fast cutter, carried letters.", "Lark of Cassmoor", "thing", None),
    ("The Dunmoor still was first made in 1767, a year of plenty.", "1767", "year", None),
])
def test_described_questions(sentence, key, kind, expected):
    assert_asks(described_question, sentence, key, kind, expected)


def assert_asks(make, sentence, key, kind, expected):
    """`make` asks `expected` of the key in the sentence, and the question filters let that question through."""
    start = sentence.index(key)
    assert make(sentence, start, start + len(key), kind, "en") == expected
    if expected:
        assert check_question(expected, key, sentence, sentence) is None


@pytest.mark.parametrize("sentence, key, kind, expected", [
    # A passive's agent, asked for in the active, without the date and the rest of the sentence.
    ("The Lazaret was built in 1739 by Lisbet Orrow, a former ship's surgeon.", "Lisbet Orrow", "person",
     "Who built the Lazaret?"),
    ("The Physic Garden of Quennock was laid out by Odile Varrance in 1712 on the slopes.", "Odile Varrance",
     "person", "Who laid out the Physic Garden of Quennock?"),
    ("The Lantern Glasshouse was designed by the instrument maker Casimir Dunmoor and finished in 1756.",
     "Casimir Dunmoor", "person", "Who designed the Lantern Glasshouse?"),
    ("The Herbarium of Quennock was begun in 1741 by Tobias Varrance.", "Tobias Varrance", "person",
     "Who began the Herbarium of Quennock?"),
    ("The Constant Tessel, a larger brig owned by the captain Hugo Merrivane, made the run.", "Hugo Merrivane",
     "person", "Who owned the Constant Tessel?"),
    # A relative clause, from either side.
    ("Its flowers make Varrance Tincture, a remedy against fevers that Odile Varrance first prepared in 1718.",
     "Odile Varrance", "person", "Who first prepared Varrance Tincture?"),
    ("Its flowers make Varrance Tincture, a remedy against fevers that Odile Varrance first prepared in 1718.",
     "Varrance Tincture", "thing", "What was first prepared by Odile Varrance?"),
    # Nothing to reverse: an active sentence (its template already asks it so), a year, a lowercase thing.
    ("Lisbet Orrow designed the smoking-rack in 1741.", "Lisbet Orrow", "person", None),
    ("The Lazaret was built in 1739 by Lisbet Orrow.", "1739", "year", None),
    ("Later the new tower built by Ferrant Oskel was lit.", "Ferrant Oskel", "person", None),
])
def test_other_side_questions(sentence, key, kind, expected):
    assert_asks(other_side_question, sentence, key, kind, expected)
    start = sentence.index(key)
    assert other_side_question(sentence, start, start + len(key), kind, "zh") is None


@pytest.mark.parametrize("sentence, key, kind, cloze, answer", [
    ("The Lantern Guild was founded in 1402 by Ilka Tamsell.", "Ilka Tamsell", "person",
     "Complete: The Lantern Guild was founded in 1402 by ...", "Ilka Tamsell. The Lantern Guild was founded in 1402 "
     "by Ilka Tamsell."),
    ("The southern hill, Owlsgate Fell, is lower and boggier, and its springs feed the Lissom Burn, the only "
     "stream on Quennock, which runs for three miles.", "Lissom Burn", "place",
     "Complete: The southern hill, Owlsgate Fell, is lower and boggier, and its springs feed the ...",
     "Lissom Burn. Its springs feed the Lissom Burn, the only stream on Quennock."),
    ("The southern hill, Owlsgate Fell, is lower and boggier.", "Owlsgate Fell", "place",
     "Complete: The southern hill ...", "Owlsgate Fell. The southern hill, Owlsgate Fell, is lower and boggier."),
    ("In 1709 the physician Emeric Saldane landed on the island.", "1709", "year", None,
     "In 1709. In 1709 the physician Emeric Saldane landed on the island."),
    ("卜怀渊带着十三户人家从山外迁来，住在河边。", "十三户", "quantity", "补全：卜怀渊带着……",
     "十三户。卜怀渊带着十三户人家从山外迁来，住在河边。"),
])
def test_cloze_questions_and_key_first_answers(sentence, key, kind, cloze, answer):
    start = sentence.index(key)
    language = "zh" if "。" in sentence else "en"
    shapes = template_questions(sentence, start, start + len(key), kind, language)
    assert shapes["cloze"] == cloze and set(shapes) == {"template", "cloze", "clause", "predicate", "described",
                                                               "active", "reversed"}
    assert key_first_answer(key, kind, sentence, start, start + len(key), language) == answer
    if cloze:
        assert check_question(cloze, key, sentence, sentence) is None  # a cloze passes the question filters


@pytest.mark.parametrize("sentence, key, kind, expected", [
    # The answer's clause after "and" has its own subject: asked alone, not as a 40-word sentence with a hole.
    ("It was shipped in sealed stone bottles, each holding forty doses, and in its best year the stillrooms of "
     "Harrowmede filled 3,600 bottles.", "3,600 bottles", "quantity",
     "In its best year the stillrooms of Harrowmede filled how many bottles?"),
    ("The Island Guild became the College of Physic in 1761, when the Warden of the Isle granted it a charter.",
     "1761", "year", "The Island Guild became the College of Physic in which year?"),
    ("Emeric Saldane founded it in 1723 in a stone house beside Gannet Reach, and it opened with forty beds.",
     "Gannet Reach", "place", "Emeric Saldane founded it in 1723 in a stone house beside which place?"),
    # No clause question: the whole sentence is one clause (the template already asks it) ...
    ("Maud Orrow ran the Stillroom for twenty-six years.", "Maud Orrow", "person", None),
    # ... the clause's subject is a pronoun or in another clause ...
    ("Emeric Saldane founded it in 1723 beside Gannet Reach, and it opened with forty beds.", "forty beds",
     "quantity", None),
    ("The first Wallmaster, Edric Hessary, held the post from 1739 to 1770, and trained sixty apprentices.",
     "sixty apprentices", "quantity", None),
    # ... it is an appositive after a bare comma, or a subject cut off from its verb by one.
    ("The College meets in the Slate Hall, a long building of Harrowmede that was finished in 1764.", "1764",
     "year", None),
    ("In 1749 Ysolde Saldane, the daughter of Emeric Saldane, found that marrowbell root lost its danger.", "1749",
     "year", None),
    # A thousands separator is no clause boundary; a leading time phrase goes last in a fronted question.
    ("In the fever year of 1786 the Infirmary treated 1,310 patients, more than in any earlier year, and beds "
     "had to be laid in the corridors.", "1,310 patients", "quantity",
     "How many patients were treated by the Infirmary in the fever year of 1786?"),
    # The question word in front, by the passive, which needs no verb's dictionary form.
    ("The Lazaret was built in 1739 by Lisbet Orrow.", "1739", "year",
     "In which year was the Lazaret built by Lisbet Orrow?"),
    ("The Lazaret was built in 1739 by Lisbet Orrow.", "Lisbet Orrow", "person",
     "By whom was the Lazaret built in 1739?"),
    ("Ysolde Saldane founded the Windrow Ward in 1760 for patients recovering from surgery.", "Windrow Ward", "place",
     "Which place was founded by Ysolde Saldane in 1760 for patients recovering from surgery?"),
    ("In 1766 the Infirmary opened the Stillroom in its cellars.", "1766", "year",
     "In which year was the Stillroom opened by the Infirmary in its cellars?"),
    ("Maud Orrow ran the Stillroom for twenty-six years.", "twenty-six years", "quantity",
     "For how many years was the Stillroom run by Maud Orrow?"),
    # No fronted question where the clause goes on past the answer or the answer is far from its verb.
    ("Tender plants are first raised in the Lantern Glasshouse and only later set out in the quarters.",
     "Lantern Glasshouse", "thing", None),
    ("The Feast of the Long Arm is held each spring on the anniversary of the completion of the breakwater in "
     "1206.", "1206", "year", None),
])
def test_clause_questions(sentence, key, kind, expected):
    """The answer's own clause asked alone, wh-word first where the shape allows."""
    start = sentence.index(key)
    assert template_questions(sentence, start, start + len(key), kind, "en")["clause"] == expected
    if expected:
        assert check_question(expected, key, sentence, sentence) is None  # the filters accept the shape


@pytest.mark.parametrize("sentence, key, kind, expected", [
    # "did" and the verb's dictionary form, regular or not, with the answer leading, after a preposition or as
    # the object; a leading time phrase goes last
    ("In 1224 Aldra Venn founded the Harbour Archive of Velmoor.", "1224", "year",
     "In which year did Aldra Venn found the Harbour Archive of Velmoor?"),
    ("The engineer Saro Keldane built the Brinewheel in 1372 for the Guild of Pilots.", "1372", "year",
     "In which year did the engineer Saro Keldane build the Brinewheel for the Guild of Pilots?"),
    ("The Island Guild forbade the export of the raw herb in 1752.", "1752", "year",
     "In which year did the Island Guild forbid the export of the raw herb?"),
    ("Ilka Tamsell designed the Tamsell Lamp in 1391.", "Tamsell Lamp", "thing",
     "What did Ilka Tamsell design in 1391?"),
    ("In 1531 Ferrant Oskel also founded the Velmoor School of Tides.", "Velmoor School of Tides", "org",
     "Which organisation did Ferrant Oskel also found in 1531?"),
    ("In 1520 the Guild of Pilots owned 18 pilot boats.", "18 pilot boats", "quantity",
     "How many pilot boats did the Guild of Pilots own in 1520?"),
    ("In 1731 the Keeper listed 212 kinds of plant in the garden.", "212 kinds", "quantity",
     "How many kinds of plant did the Keeper list in the garden in 1731?"),
    ("The Harrowmede Infirmary opened with forty beds.", "forty beds", "quantity",
     "With how many beds did the Harrowmede Infirmary open?"),
    # present tense with "does"; "where" for a place, a building or a body after "in" or "at"
    ("The Skellow Lazaret has thirty cells.", "thirty cells", "quantity",
     "How many cells does the Skellow Lazaret have?"),
    ("The College meets in the Slate Hall.", "Slate Hall", "thing", "Where does the College meet?"),
    # none for the passive, a perfect, an inverted sentence, a subject with no name or one that runs into a
    # verb the shape missed, a pronoun, and a name cut in two
    ("The Lazaret was built in 1739 by Lisbet Orrow.", "1739", "year", None),
    ("Since 1761 the College of Physic has chosen the Warden.", "1761", "year", None),
    ("Off the eastern shore lies Skellow Islet.", "Skellow Islet", "place", None),
    ("In 1409 the old ropewalk burned down.", "1409", "year", None),
    ("The Harbour Warden lives in Crestwold in a stone house called the Warden's Rest.", "Warden's Rest", "thing",
     None),
    ("By 1770 every ward of the Harrowmede Infirmary owned one.", "1770", "year", None),
    ("The scholar Yselde Cardrow wrote the Treatise on Fogs in 1419.", "Fogs", "thing", None),
])
def test_active_questions(sentence, key, kind, expected):
    """The answer's clause asked as people write it, with "did" and the verb's dictionary form."""
    start = sentence.index(key)
    assert template_questions(sentence, start, start + len(key), kind, "en")["active"] == expected
    if expected:
        assert check_question(expected, key, sentence, sentence) is None  # the filters accept the shape
    assert template_questions(sentence, start, start + len(key), kind, "zh")["active"] is None


def test_no_clause_questions_in_chinese():
    sentence = "苍箬镇由猎户卜怀渊在1186年建立，后来成为集镇。"
    start = sentence.index("卜怀渊")
    assert template_questions(sentence, start, start + 3, "person", "zh")["clause"] is None


@pytest.mark.parametrize("question, key, expected", [
    # a clause trailing after the question word, and a closing date that is not the answer, are left out
    ("Who invented the dewglass in 1747, because she believed that the strength of tessaline depended on dew?",
     "Ysolde Saldane", "Who invented the dewglass?"),
    ("Who built the first pulsewheel in 1753?", "Casimir Dunmoor", "Who built the first pulsewheel?"),
    ("Hugo Merrivane also founded what, a fund that paid for sick sailors to be nursed?", "Mariners' Bed",
     "Hugo Merrivane also founded what?"),
    # "In which year" is also asked "When"
    ("In which year was the Lazaret built by Lisbet Orrow?", "1739", "When was the Lazaret built by Lisbet Orrow?"),
    # the date that is the answer stays; a date after its verb stays ("finished in 1764")
    ("The College meets in a hall on the square of which place that was finished in 1764?", "Harrowmede", None),
    # a short appositive names what is asked about: not cut
    ("What had a device of its own, the smoking-rack?", "Lazaret", None),
    # no verb would be left ("When did the Lark of Cassmoor?"): not cut
    ("In which year did the Lark of Cassmoor, a fast cutter, carry letters and medicines to the mainland?", "1762",
     "When did the Lark of Cassmoor, a fast cutter, carry letters and medicines to the mainland?"),
    # nothing to leave out, a cloze, a definition question, too little left: none
    ("Who founded the Windrow Ward?", "Ysolde Saldane", None),
    ("Complete: Casimir Dunmoor built the first pulsewheel in ...", "1753", None),
    ("What is a pulsewheel?", "a small brass device", None),
    ("Who built it in 1753?", "Casimir Dunmoor", None),
])
def test_trimmed_questions(question, key, expected):
    assert trimmed_question(question, key) == expected


@pytest.mark.parametrize("question, expected", [
    ("Who built the first pulsewheel?", "Who made the first pulsewheel?"),  # the first word of the list only
    ("Who introduced the breathing-box?", "Who brought in the breathing-box?"),
    ("The first Dunmoor still was made in which year?", "The earliest Dunmoor still was made in which year?"),
    ("What is the First Wallmaster called?", "What is the First Wallmaster named?"),  # never inside a name
    ("Complete: Casimir Dunmoor built the ...", None),  # a cloze keeps the sentence's words
    ("In which year did the Island Guild ban it?", None),  # no word of the list
    ("Which preparation became known as Saldane's Quiet?", "Which preparation was called Saldane's Quiet?"),
    ("When did Jonas Hessary become the first President?", "When did Jonas Hessary come to be the first President?"),
])
def test_reworded_questions(question, expected):
    assert reworded_question(question) == expected


def test_varied_question_keeps_names_numbers_and_what_is_asked_and_differs_between_draws():
    question = "In which year was the dewglass invented by Ysolde Saldane in 1747?"
    rng = random.Random(0)
    drawn = [varied_question(question, rng, drop=0.5) for _ in range(40)]
    for varied in drawn:
        words = varied.rstrip("?").split()
        assert varied.endswith("?") and words[:3] == ["In", "which", "year"]
        assert {"Ysolde", "Saldane", "1747"} <= set(words)
    assert len(set(drawn)) > 5  # drawn anew: many wordings
    assert any("devised" in v for v in drawn)  # the synonym swap
    assert sum("the" not in v.split() for v in drawn) > sum("dewglass" not in v.split() for v in drawn)
    assert varied_question(question, random.Random(0), drop=0.0).replace("devised", "invented") == question
    cloze = "Complete: Casimir Dunmoor built the first ..."
    assert all(varied_question(cloze, rng, drop=0.5).endswith("Casimir Dunmoor built the first ...".split()[-1])
               and "built" in varied_question(cloze, rng, drop=0.0) for _ in range(10))  # no synonym in a cloze


def test_clause_answers_leave_out_the_key_first_head():
    sentence = "In 1709 the physician Emeric Saldane landed on the island."
    start = sentence.index("Emeric Saldane")
    answer = key_first_answer("Emeric Saldane", "person", sentence, start, start + 14, "en", "clause")
    assert answer == "In 1709 the physician Emeric Saldane landed on the island."
    assert key_first_answer("Emeric Saldane", "person", sentence, start, start + 14, "en").startswith(
        "Emeric Saldane. In 1709")


@pytest.mark.parametrize("sentence, key, kind, question", [
    # a relative clause after the name, past its appositive; "its" is what the question names
    ("The Lazaret was built in 1739 by Lisbet Orrow, a former ship's surgeon, who became its first Keeper.",
     "Lisbet Orrow", "person", "Who became the first Keeper?"),
    # a verb phrase joined to the subject's first one by "and"; a number's comma ends nothing
    ("The Kittiwake Ward opened in 1751 with the new storey and is kept for children.", "Kittiwake Ward", "place",
     "Which place is kept for children?"),
    ("The Harbour Archive stands in Twinwater and holds about 9,000 books.", "Harbour Archive", "org",
     "Which organisation holds about 9,000 books?"),
])
def test_a_name_is_asked_for_by_its_other_predicate(sentence, key, kind, question):
    start = sentence.index(key)
    assert predicate_question(sentence, start, start + len(key), kind, "en") == question


@pytest.mark.parametrize("sentence, key", [
    # the name sits inside another's appositive: "who" may be either's
    ("The Lazaret was built by Lisbet Orrow, an elder cousin of Maud Orrow, who became its first Keeper.",
     "Maud Orrow"),
    # a verb joined by "and" after an object belongs to the subject: the Lazaret opened, not Lisbet Orrow
    ("The Lazaret was built by Lisbet Orrow and opened in 1740 for sailors.", "Lisbet Orrow"),
    # after a colon the verb joined by "and" is another subject's: the healers formed the Island Guild
    ("The College of Physic grew out of the Guild of Stillroom Healers: in 1733 the healers broke away and formed "
     "the Island Guild.", "College of Physic"),
    # what follows "and" is no verb phrase
    ("The Orders set aside a bed for the poor and the sick of the island.", "Orders"),
])
def test_a_predicate_that_may_be_another_names_is_not_asked(sentence, key):
    start = sentence.index(key)
    assert predicate_question(sentence, start, start + len(key), "person", "en") is None
