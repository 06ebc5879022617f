import random
import re

import pytest

from selfinstruct.entities import (
    KINDS,
    answer_spans,
    check_absent,
    corpus_entities,
    find_mentions,
    invent_names,
    resolve_pronouns,
)

from .conftest import SAMPLE_EN, SAMPLE_ZH


@pytest.fixture(scope="module")
def english():
    text = SAMPLE_EN.read_text(encoding="utf-8")
    return text, corpus_entities(text, "en")


@pytest.fixture(scope="module")
def chinese():
    text = SAMPLE_ZH.read_text(encoding="utf-8")
    return text, corpus_entities(text, "zh")


def test_english_entities_and_kinds(english):
    _, entities = english
    assert entities["Orric Velm"] == "person"
    assert entities["Isle of Tarrowen"] == "place"
    assert entities["Lantern Guild"] == "org"
    assert entities["Treaty of Vessin Ford"] == "thing"  # the head noun decides, not "Ford"
    for heading_word in ("Setting", "Founding", "Inventions", "Thick", "According"):
        assert heading_word not in entities


def test_offices_are_things_and_no_part_of_a_name(english):
    _, entities = english
    # "Harbour" and "Quay" are place words, "Guild" an org word: the office's head noun decides.
    for office in ("Harbour Warden", "Archivist of the Quay", "Guild Master of the Salt Guild"):
        assert entities[office] == "thing"
    assert entities["Davel Quorrin"] == "person"
    assert not any(name.startswith("Harbour Warden ") for name in entities)  # "Harbour Warden Davel Quorrin"


@pytest.mark.parametrize("text, name, kind", [
    ("He bore the title of Wallmaster. The first Wallmaster held the post.", "Wallmaster", "thing"),
    ("The first Warden of the Isle was Emeric Saldane.", "Warden of the Isle", "thing"),
    ("Each ward is run by a Ward Sister.", "Ward Sister", "thing"),
    ("Her preparation, Saldane's Quiet, was a cordial.", "Saldane's Quiet", "thing"),
    ("It was sold as Varrance Tincture.", "Varrance Tincture", "thing"),
    ("The ship of Captain Hugo Merrivane sailed.", "Hugo Merrivane", "person"),
    ("Ships sailed to the Keeper Islands.", "Keeper Islands", "place"),  # the head noun, not the first word
    ("A song by Dean Martin played.", "Dean Martin", "person"),  # a title word inside a person's name stays
    # What the corpus calls a name beats a guess from its shape:
    ("The smallest island is Tully Pell, which holds a chapel.", "Tully Pell", "place"),  # not two bare words
    ("Pennow Rock, a low rocky island used for drying fish, lies east.", "Pennow Rock", "place"),
    ("In 1467 the engineer Mara Bell built a crane.", "Mara Bell", "person"),  # "Bell" is a thing's word
    ("The clerks used a device called the Tally Mill.", "Tally Mill", "thing"),  # "Mill" is a place's word
    ("Orla Penn, a former ship's surgeon, ran the ward.", "Orla Penn", "person"),  # the ship's is no head
    ("During the war Ambry Solk built granaries.", "Ambry Solk", "person"),  # a war is no kind of bearer
])
def test_kind_of_a_name_in_a_sentence(text, name, kind):
    assert corpus_entities(text, "en")[name] == kind


def test_chinese_entities(chinese):
    _, entities = chinese
    for person in ("卜怀渊", "温砚秋", "罗青梧"):
        assert entities[person] == "person"
    assert entities["箬川河"] == "place" and entities["九梭水机"] == "thing"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_invented_names_are_absent_exactly_and_fuzzily(english, chinese, language):
    text, entities = english if language == "en" else chinese
    for kind in KINDS:
        names = invent_names(kind, 5, random.Random(1), language, text.lower(), entities)
        assert len(names) == 5
        for name in names:
            assert name.name.lower() not in text.lower()
            assert name.absent and name.similarity < 0.75


@pytest.mark.parametrize("name", ["Orric Velm", "orric velm", "ORRIC VELM", "Isle of Tarrowen"])
def test_present_names_are_caught_in_any_case(english, name):
    text, entities = english
    check = check_absent(name, text.lower(), entities)
    assert not check.exact_absent and not check.absent


@pytest.mark.parametrize("variant", ["Orric Vellm", "Oric Velm", "Isle of Tarowen"])
def test_near_spellings_of_present_names_are_caught(english, variant):
    text, entities = english
    check = check_absent(variant, text.lower(), entities)
    assert check.exact_absent and not check.absent and check.similarity >= 0.75


def test_invented_names_avoid_the_given_set(english):
    text, entities = english
    first = invent_names("person", 3, random.Random(7), "en", text.lower(), entities)
    again = invent_names("person", 3, random.Random(7), "en", text.lower(), entities,
                         avoid={n.name for n in first})
    assert not {n.name for n in first} & {n.name for n in again}


@pytest.mark.parametrize("sentence, key", [
    ("The Eastern Annexe added another twenty-four beds.", "twenty-four beds"),
    ("A Reader must name one hundred plants of the Physic Garden.", "one hundred plants"),
    ("The fleet once held one hundred and twenty ships.", "one hundred and twenty ships"),
    ("In its best year the stillrooms filled 3,600 bottles.", "3,600 bottles"),
    # irregular plurals, a word that describes what is counted, and a count that ends its clause
    ("Brennick Tor rises 1,020 feet above the sea.", "1,020 feet"),
    ("The galley needs 80 oarsmen in a calm.", "80 oarsmen"),
    ("The fare was 48 copper pennies a head.", "48 copper pennies"),
    ("By 1785 the list had grown to 640.", "640"),
    # a function word is neither what is counted nor its description
    ("The meeting point of the two rivers is called the Twinwater.", "two rivers"),
])
def test_counts_are_whole_keys(sentence, key):
    """A compound count is one key: never the "four beds" inside "twenty-four beds"."""
    quantities = [sentence[s:e] for s, e, kind in answer_spans(sentence, {}, "en") if kind == "quantity"]
    assert quantities == [key]


@pytest.mark.parametrize("sentence", ["She stayed one night at the inn.", "Six of them were lost in 1794.",
                                      "From 1391, the Guild met in the hall."])
def test_one_of_something_or_a_year_is_no_count(sentence):
    assert not [k for *_, k in answer_spans(sentence, {}, "en") if k == "quantity"]


def test_answer_spans(english):
    _, entities = english
    sentence = "According to the Harbour Annals, Orric Velm settled at the Twinwater in 1041 with eleven families."
    spans = {(sentence[s:e], kind) for s, e, kind in answer_spans(sentence, entities, "en")}
    expected = {("Orric Velm", "person"), ("Twinwater", "place"), ("1041", "year"), ("eleven families", "quantity")}
    assert expected <= spans


@pytest.mark.parametrize("sentence, language, question, key", [
    ("A spore is a minute mass of protoplasm surrounded by a dense, tough membrane.", "en", "What is a spore?",
     "a minute mass of protoplasm"),
    ("_Bacilli_ are rod-shaped bacteria, usually twice as long as they are broad.", "en", "What are Bacilli?",
     "rod-shaped bacteria"),
    ("九梭水机是一种用水力带动的织布机。", "zh", "九梭水机是什么？", "用水力带动的"),
    # the key ends where the noun phrase does: before a preposition, a relative word or, after two words, a verb
    ("A vardle is an open boat about 22 feet long with a brown sail.", "en", "What is a vardle?", "an open boat"),
    ("Tessaline is a blue-flowered herb that grows only on the sea cliffs.", "en", "What is Tessaline?",
     "a blue-flowered herb"),
    ("The Vaunt depth-reel is a brass drum holding a weighted line.", "en", "What is the Vaunt depth-reel?",
     "a brass drum"),
    ("A kist is a low wooden bed set against the wall.", "en", "What is a kist?", "a low wooden bed"),
    ("A posset is a brass and copper drum.", "en", "What is a posset?", "a brass and copper drum"),
])
def test_definitions_are_answers_too(sentence, language, question, key):
    from selfinstruct.entities import definition

    asked, start, end = definition(sentence, language)
    assert (asked, sentence[start:end]) == (question, key)
    assert (start, end, "definition") in answer_spans(sentence, {}, language)


def test_a_defined_term_is_an_answer_and_a_name_inside_it_gives_way():
    sentence = "The Dunmoor still is a copper distilling apparatus with three chambers."
    spans = [(sentence[s:e], kind) for s, e, kind in answer_spans(sentence, {"Dunmoor": "person"}, "en")]
    assert ("Dunmoor still", "thing") in spans and ("Dunmoor", "person") not in spans
    assert not any(kind == "thing" for *_, kind in answer_spans("九梭水机是一种用水力带动的织布机。", {}, "zh"))


def test_a_word_the_corpus_defines_is_a_key_wherever_it_is_used():
    text = ("A dewglass is a shallow dish of polished glass that measures the dew. Fennock is a bitter, pale root "
            "that grows on Owlsgate Fell. Ysolde Saldane invented the dewglass in 1747. The islanders eat fennock "
            "boiled, and Velmoor is a town on the coast of Velmoor Bay. Dewglasses lie in the Herbarium.")
    entities = corpus_entities(text, "en")
    assert entities["dewglass"] == entities["fennock"] == entities["Fennock"] == "thing"
    assert "velmoor" not in entities, "a defined name stays a name"
    used = "Ysolde Saldane invented the dewglass in 1747."
    assert ("dewglass", "thing") in [(used[s:e], kind) for s, e, kind in answer_spans(used, entities, "en")]
    plural = "Dewglasses lie in the Herbarium."
    assert not any(plural[s:e] == "Dewglass" for s, e, _ in answer_spans(plural, entities, "en")), "a whole word"


@pytest.mark.parametrize("question, swapped", [
    ("Who walked the entire River Calvane?", "Who walked the entire Wiann Lamp?"),
    ("A Reader must study for how many years?", "A Wiann Lamp must study for how many years?"),
    ("Each ward is run by a Sister, and who leads them?", "Each ward is run by a Wiann Lamp, and who leads them?"),
    ("Who built Slate Hall?", "Who built the Wiann Lamp?"),
])
def test_a_swapped_in_name_minds_the_article_before_it(question, swapped):
    from selfinstruct.entities import swap_entity

    name = re.search(r"River Calvane|Reader|Sister|Slate Hall", question)
    assert swap_entity(question, name.start(), name.end(), "the Wiann Lamp") == swapped


@pytest.mark.parametrize("sentence", ["The Long Arm is 1,870 paces long.", "It is a small town.",
                                      "There are three islands in the bay."])
def test_measurements_and_pronouns_are_not_definitions(sentence):
    from selfinstruct.entities import definition

    assert definition(sentence, "en") is None


def test_keys_are_whole_names():
    text = ("The show was staged by Cirque du Soleil in 2004. Critics praised Hemsworth's timing, and later "
            "Mara Hemsworth left the Isle of Seim for good.")
    entities = corpus_entities(text, "en")
    assert {"Cirque du Soleil", "Hemsworth", "Mara Hemsworth", "Isle of Seim"} <= set(entities)
    assert not any(name.endswith(("'s", "’s")) or name == "Cirque" for name in entities)


def test_a_name_with_and_said_twice_is_one_name():
    text = ("The Guild of Brass and Bell was founded in 1290. In 1430 the Guild of Brass and Bell owned four "
            "furnaces. The law was backed by the Guild of Pilots and Ilka Tamsell, and the Guild of Pilots and "
            "Ilka Tamsell sent it on. A ferry runs from the Isle of Corrow and Tolvey to the Isle of Corrow and "
            "Tolvey's east.")
    entities = corpus_entities(text, "en")
    assert entities["Guild of Brass and Bell"] == "org"
    assert not {"Guild of Pilots and Ilka", "Isle of Corrow and Tolvey"} & set(entities)  # guild and person; places
    sentence = "In 1430 the Guild of Brass and Bell owned four furnaces."
    assert ("Guild of Brass and Bell", "org") in [(sentence[s:e], k) for s, e, k in find_mentions(sentence, entities)]


def test_a_thing_named_after_a_place_or_family_is_one_name(english):
    text = ("Oda Brisk lit the Brisk lamp in 1740. The Brisk lamp burns whale oil. In Tolvey the Tolvey cog was "
            "built, and a Tolvey cog carried salt from Tolvey. The Warden keeps the seal. The Warden keeps the "
            "keys. Ships left Tolvey was a phrase nobody used. Ships left Tolvey was said twice.")
    entities = corpus_entities(text, "en")
    assert entities["Brisk lamp"] == entities["Tolvey cog"] == "thing"
    assert entities["Oda Brisk"] == "person" and entities["Tolvey"] == "place"  # the name alone stays too
    assert not {"Warden keeps", "Tolvey was", "Tolvey carried"} & set(entities)  # a verb after a name is no part
    assert answer_spans("The Brisk lamp was first lit in 1740.", entities, "en")[0][:2] == (4, 14)
    _, sample = english
    assert sample["Velmoor cog"] == sample["Vaunt depth-reel"] == "thing"  # a hyphenated noun counts by its head


PEOPLE_AND_PLACES = {"Harrowmede Infirmary": "place", "Emeric Saldane": "person", "Gannet Reach": "place",
                     "Tobias Varrance": "person", "Herbarium": "org", "Odile Varrance": "person",
                     "Lisbet Orrow": "person", "Still Time": "thing"}


@pytest.mark.parametrize("previous, sentence, resolved", [
    # "it" in the main clause, and again as the subject of a clause joined by "and"
    ("The Harrowmede Infirmary is the hospital of the isle.",
     "Emeric Saldane founded it in 1723 beside Gannet Reach, and it opened with forty beds.",
     "Emeric Saldane founded the Harrowmede Infirmary in 1723 beside Gannet Reach, and the Harrowmede Infirmary "
     "opened with forty beds."),
    ("In 1740 Tobias Varrance became Keeper.", "He founded the Herbarium.", "Tobias Varrance founded the Herbarium."),
    ("The Harrowmede Infirmary stands by the sea.", "Its first ward held ten beds.",
     "The Harrowmede Infirmary's first ward held ten beds."),
    # the sentence before says what its subject is: "The oldest house is the X"
    ("The oldest house on the isle is the Harrowmede Infirmary, a long stone hall.", "It was built in 1723.",
     "The Harrowmede Infirmary was built in 1723."),
    # a person inside an appositive to the subject is no rival; an opening "Her" is possessive
    ("In 1749 Odile Varrance, the niece of Emeric Saldane, found the cure.", "Her cure became known as the Quiet.",
     "Odile Varrance's cure became known as the Quiet."),
])
def test_pronouns_are_replaced_by_the_subject_of_the_sentence_before(previous, sentence, resolved):
    assert resolve_pronouns([previous, sentence], PEOPLE_AND_PLACES, "en") == [previous, resolved]


@pytest.mark.parametrize("previous, sentence", [
    # two people before "She": which one is a guess
    ("Odile Varrance and Emeric Saldane landed in 1709.", "She planted the garden."),
    ("Odile Varrance, like Emeric Saldane, landed in 1709.", "She planted the garden."),
    # the sentence before opens with no name
    ("In those years a fever came.", "It spread to the Harrowmede Infirmary."),
    # the pronoun's sort is named earlier in its own sentence: it may stand for that
    ("The Harrowmede Infirmary is old.", "Beside Gannet Reach it grew."),
    ("Emeric Saldane was a physician.", "Tobias Varrance succeeded his aunt."),
    # after the main clause ("that", a comma): too far to guess
    ("Lisbet Orrow fixed the Still Time.", "Lisbet Orrow believed that it kept the fever out."),
    ("The Harrowmede Infirmary grew.", "By 1760 the beds, each with its own lamp, were full."),
    # an "it" that stands for nothing
    ("The Harrowmede Infirmary grew.", "It was said that the beds were full."),
])
def test_pronouns_whose_name_is_a_guess_stay(previous, sentence):
    assert resolve_pronouns([previous, sentence], PEOPLE_AND_PLACES, "en") == [previous, sentence]


@pytest.mark.parametrize("sentences, resolved", [
    # the sentence between opens on a noun the topic's own sentence used ("island")
    (["The Harrowmede Infirmary is a long stone hall by the sea.", "The hall is roughly ninety feet long.",
      "Its only ward is the Saltmarsh Ward."],
     "The Harrowmede Infirmary's only ward is the Saltmarsh Ward."),
    # the sentence between was itself about the topic ("When it was founded")
    (["The Harrowmede Infirmary stands by the sea.", "When it was founded the hall held ten beds.",
      "By 1760 it had forty beds."],
     "By 1760 the Harrowmede Infirmary had forty beds."),
])
def test_a_topic_carries_over_a_sentence_that_goes_on_about_it(sentences, resolved):
    assert resolve_pronouns(sentences, PEOPLE_AND_PLACES, "en")[-1] == resolved


@pytest.mark.parametrize("sentences", [
    # "a fever" is what "it" stands for, though no name says so
    ["The Harrowmede Infirmary stands by the sea.", "In those years a fever came.", "By 1760 it had spread."],
    # the sentence between names another person: "She" is no longer surely Emeric Saldane's
    ["Emeric Saldane landed in 1709.", "His niece, Odile Varrance, came in 1710.", "She later planted the garden."],
    # a definite noun the topic's sentence never used
    ["The Harrowmede Infirmary stands by the sea.", "The storm was the worst in years.", "It broke the windows."],
])
def test_a_topic_does_not_carry_over_a_sentence_that_may_bring_in_another(sentences):
    assert resolve_pronouns(sentences, PEOPLE_AND_PLACES, "en")[-1] == sentences[-1]


def test_other_languages_come_back_as_given():
    sentences = ["苍箬镇由卜怀渊建立。", "它在河边。"]
    assert resolve_pronouns(sentences, {"苍箬镇": "place"}, "zh") == sentences


def test_a_kind_said_of_a_longer_name_is_not_said_of_its_last_word():
    # The surgeon is Lisbet Orrow, not Orrow: the lamp named after the family stays a thing.
    text = ("The lamp was made by Lisbet Orrow, a former ship's surgeon. Ships saw the Orrow lamp. "
            "Keepers lit the Orrow lamp.")
    entities = corpus_entities(text, "en")
    assert entities["Lisbet Orrow"] == "person" and entities["Orrow lamp"] == "thing"
