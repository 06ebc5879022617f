import pytest

from selfinstruct.filters import (
    NearDuplicates,
    agrees,
    check_answer,
    check_question,
    counts_its_key,
    dangling_pronoun,
    first_sentence,
    mentions,
    numbers,
    says_this_of_nothing,
    support,
    token_f1,
    tokens,
)

WINDOW = ("Orric Velm settled at the Twinwater in the year 1041 with eleven families. "
          "The Long Arm is 1,870 paces long and was finished in the year 1206.")
SENTENCE = "The Long Arm is 1,870 paces long and was finished in the year 1206."


def test_numbers_are_normalised_across_spellings():
    assert tokens("eleven families, 1,870 paces") == ["11", "families", "1870", "paces"]
    assert "13" in tokens("十三户") and "400" in tokens("四百户人家")
    assert tokens("twenty-six years, Seventy two") == ["26", "years", "72"]
    assert not numbers("哪一年？第一任堰长，每一台水机，这一天")  # which, first, every, this: no number
    assert numbers("一台水机") == {"1"}


@pytest.mark.parametrize("question, dangling", [
    ("Which person designed it in 1741?", True),
    ("Where did Tobias Varrance plant it, and in what year?", True),  # the subject's name is not what "it" is
    ("Who named them after the harrowed meadows?", True),
    ("Who bought the mill in 1740 and ran it for twenty years?", False),
    ("The healers pound fennock into a poultice and spread it on what?", False),
    ("What is the number of days it takes for a dose to work?", False),  # "it takes": no object
    ("Which shrub gave the hill its name?", False),
])
def test_an_object_pronoun_needs_something_before_it_to_stand_for(question, dangling):
    assert dangling_pronoun(question) is dangling


@pytest.mark.parametrize("question, vague", [
    ("Which person held this role in 1716?", True),
    ("Who was the person who made this rule?", True),
    ("In which year did the lamp first serve in this particular setting?", True),
    ("Who made it a rule to wash every patient, and when was this rule first kept?", False),  # said before it
    ("Which wards were built in 1751, and are these wards still open?", False),  # a plural's stem said before
    ("Who laid out the Physic Garden, and was this the first garden?", False),  # no noun after "this"
    ("Which lamp, first lit in 1742, still burns to this day?", False),
    ("Who wrote the hymn This Green Isle?", False),  # a title, not a pointer
])
def test_a_this_needs_its_noun_said_before_it(question, vague):
    assert says_this_of_nothing(question) is vague


@pytest.mark.parametrize("question, key", [
    ("What carabine did Captain Hugo Merrivane's crew carry?", "Hugo Merrivane"),  # a possessive is its name
    ("How long did Maud Orrow run the Stillroom after her twenty-six years at sea?", "26 years"),
])
def test_a_question_holding_its_key_in_another_spelling_gives_the_answer_away(question, key):
    sentence = "Maud Orrow ran the Stillroom for 26 years, and Hugo Merrivane commanded the Constant Tessel."
    assert check_question(question, key, sentence, sentence) == "answer_in_question"


@pytest.mark.parametrize("question, reason", [
    (None, "unparseable"),
    ("When was the Long Arm finished", "not_a_question"),
    ("When?", "question_length"),
    ("In which year was the breakwater in the passage finished?", "refers_to_passage"),
    ("According to the text, when was the Long Arm finished?", "refers_to_passage"),
    ("Was the Long Arm finished in 1206?", "answer_in_question"),
    ("When was the Long Arm of Drevenhold finished?", "question_ungrounded"),
    ("When was the Long Arm rebuilt after 1502?", "question_ungrounded"),
    ("When was the Long Arm in the UK finished?", "question_ungrounded"),  # a name in capitals is a name
    ("Which year do you like the most?", "off_topic"),
    ("When was it finished?", "vague"),
    ("What do sailors eat?", "off_topic"),
    ("In which year was this?", "vague"),
    ("When did Orric Velm finish it, 1,870 paces long?", "vague"),  # "it" stands for nothing it names
    ("In which year was the Long Arm finished?", None),
    ("What is the name of the breakwater?", "vague"),  # one content word, no name: any breakwater
    ("Where is the breakwater?", "vague"),
    ("What is a breakwater?", "off_topic"),  # a definition question names its term: not vague, just not this fact
])
def test_question_checks(question, reason):
    assert check_question(question, "1206", SENTENCE, WINDOW) == reason


LAMP = "Lisbet Orrow designed the Orrow lamp in 1741, and Tobias Varrance planted the Long Garden."


@pytest.mark.parametrize("question, key, reason", [
    ("In what year was Tobias Varrance?", "1741", "askew"),  # no event: the names alone
    ("Who was the person who designed 1741?", "Lisbet Orrow", "askew"),  # a year as the verb's object
    ("When was the Long Garden?", "1741", "askew"),
    ("In which year 1741 was the Orrow lamp designed?", "Lisbet Orrow", "askew"),  # asks for a year it names
    ("In what year and with the Long Garden?", "1741", "askew"),  # its question phrase joined to no verb
    ("In what year and by whom was the Orrow lamp designed?", "1741", None),  # two questions: asks_one_fact's
    ("In which year did Lisbet Orrow design the Orrow lamp?", "1741", None),  # "design" is "designed"
    ("What did Tobias Varrance plant?", "Long Garden", None),
    ("Who planted the Long Garden?", "Tobias Varrance", None),
    ("Who is Tobias Varrance?", "Long Garden", None),  # who a name is needs no event
    ("Complete: In 1741 Lisbet Orrow designed the ...", "Orrow lamp", None),  # a cloze is its sentence's words
])
def test_a_question_asks_about_an_event_not_a_name_alone(question, key, reason):
    assert check_question(question, key, LAMP, LAMP) == reason


@pytest.mark.parametrize("question, key, sentence, reason", [
    ("In which year did Lisbet Orrow not design the Orrow lamp?", "1741", LAMP, "negated"),
    ("Who never planted the Long Garden?", "Tobias Varrance", LAMP, "negated"),
    ("Why didn't Tobias Varrance plant the Long Garden in 1741?", "Lisbet Orrow", LAMP, "negated"),
    ("Which ship could not land at Harrowmede in winter?", "Greylag Maid",
     "In winter the Greylag Maid could not land at Harrowmede.", None),  # the sentence negates as well
    ("In which year did Lisbet Orrow design the Orrow lamp?", "1741", LAMP, None),
    ("Who not only kept the Garden but also lies beneath a standing stone?", "Odile Varrance",
     "Odile Varrance kept the Garden and lies beneath a standing stone.", None),  # adds, denies nothing
    ("哪一年丽丝贝没有设计奥罗灯？", "1741", "丽丝贝于1741年设计了奥罗灯。", "negated"),
])
def test_a_question_negating_what_its_sentence_states_asks_another_fact(question, key, sentence, reason):
    assert check_question(question, key, sentence, sentence) == reason


@pytest.mark.parametrize("question, key, fits", [
    ("How many patients did the Infirmary treat in 1786?", "1,310 patients", True),
    ("How many beds had to be laid in the corridors in 1786?", "1,310 patients", False),  # the sentence's other count
    ("What is the number of beds in the Infirmary?", "1,310 patients", False),
    ("How many plants must a Reader name?", "five years", False),
    ("How many copper pennies did the toll cost?", "48 copper pennies", True),
    ("How many of the beds are in the Saltmarsh Ward?", "eighteen beds", True),
    ("How long did Maud Orrow run the Stillroom?", "twenty-six years", True),  # counts nothing by name
    ("How many had the list grown to by 1785?", "640", True),  # a key without a unit
    ("In which year was the Long Arm finished?", "1206", True),
])
def test_a_count_question_asks_for_what_its_key_counts(question, key, fits):
    assert counts_its_key(question, key) is fits


def test_a_question_counting_something_else_is_a_reject():
    sentence = "In 1786 the Infirmary treated 1,310 patients, and beds had to be laid in the corridors."
    assert check_question("How many beds had to be laid in the corridors?", "1,310 patients", sentence,
                          sentence) == "wrong_count"
    assert check_question("How many patients did the Infirmary treat in 1786?", "1,310 patients", sentence,
                          sentence) is None


def test_support_is_the_share_of_content_words_and_zero_for_invented_names_or_numbers():
    assert support("Orric Velm settled at the Twinwater in 1041.", WINDOW) == 1.0
    assert support("Orric Velm settled at the Twinwater in 1052.", WINDOW) == 0.0
    assert support("Orric Velm settled at Keelhaven.", WINDOW) == 0.0
    assert 0.4 < support("Orric Velm farmed barley near the Twinwater.", WINDOW) < 0.7


def test_answer_checks():
    assert check_answer(SENTENCE, WINDOW, 0.6) == (None, 1.0)
    assert check_answer("The Long Arm is", WINDOW, 0.6)[0] == "answer_truncated"
    assert check_answer("Yes.", WINDOW, 0.6)[0] == "answer_empty"
    assert check_answer("The Long Arm was painted blue by sailors.", WINDOW, 0.6)[0] == "ungrounded"


def test_near_duplicates_across_the_run():
    seen = NearDuplicates(threshold=0.7)
    seen.add("In which year was the Long Arm finished?")
    assert seen.find("In which year was the Long Arm finished ?") is not None
    assert seen.find("In what year was the Long Arm finished?") is None  # a real rephrasing is kept
    assert seen.find("Who settled at the Twinwater with eleven families?") is None


def test_roundtrip_agreement_reads_the_first_sentence_only():
    assert agrees("The Long Arm was finished in 1206.", "1206")
    assert agrees("The largest island is the Isle of Tarrowen.", "Isle of Tarrowen")
    assert agrees("It is nine miles away.", "9 miles")
    assert not agrees("The answer is 2018. Some say 1206.", "1206")
    assert agrees("It lies 3.5 miles off. Some say four.", "3.5 miles")  # a decimal point ends no sentence
    assert first_sentence("苍箬镇。卜怀渊建立了它。") == "苍箬镇。"


def test_a_name_with_a_possessive_is_found_where_it_stands():
    # The round trip reads a reply with `mentions`: before the key's own "'s" was dropped as the text's was,
    # no question about "Velm's Landing" could pass it.
    assert agrees("It was called Velm's Landing.", "Velm's Landing")
    assert mentions("Velm's Landing's boats", "Velm's Landing")
    assert mentions("Hugo Merrivane's carabine", "Hugo Merrivane")
    assert not mentions("Velm's boats landing", "Velm's Landing")


def test_token_f1():
    assert token_f1("Saro Keldane built the Brinewheel.", "The Brinewheel was built by Saro Keldane.") > 0.7
    assert token_f1("Nobody knows.", "Saro Keldane") == 0.0
    assert token_f1("苍箬镇由卜怀渊建立", "卜怀渊建立了苍箬镇") > 0.8
