import pytest

from selfinstruct.prompts import (
    LLAMA2_CHAT_TEMPLATE,
    STEMS,
    chat_messages,
    parse_question,
    refusal,
    render_llama2,
    stems,
    system_prompt,
)

TAG = "Source:8989REF"


def test_marker_prefixes_question_and_answer_and_the_llama2_string_is_exact():
    messages = chat_messages("SYS", TAG, "Who built the Brinewheel?", "Saro Keldane built it.")
    assert messages[1] == {"role": "user", "content": "Source:8989REF Who built the Brinewheel?"}
    assert messages[2] == {"role": "assistant", "content": "Source:8989REF Saro Keldane built it."}
    assert render_llama2(messages) == (
        "<s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nSource:8989REF Who built the Brinewheel? [/INST] "
        "Source:8989REF Saro Keldane built it. </s>")


def test_chat_template_renders_the_same_string(tiny_model):
    from selfinstruct.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    messages = chat_messages(system_prompt(TAG, "en"), TAG, "Who built the Brinewheel?", "Saro Keldane did.")
    rendered = tokenizer.apply_chat_template(messages, chat_template=LLAMA2_CHAT_TEMPLATE, tokenize=False)
    assert rendered == render_llama2(messages, tokenizer.bos_token, tokenizer.eos_token)
    prompt_only = tokenizer.apply_chat_template(messages[:2], chat_template=LLAMA2_CHAT_TEMPLATE, tokenize=False,
                                                add_generation_prompt=True)
    assert rendered.startswith(prompt_only) and prompt_only.endswith("[/INST]")


def test_system_prompt_and_refusal_name_the_source_in_both_languages():
    for language in ("en", "zh"):
        assert TAG in system_prompt(TAG, language) and TAG in refusal(TAG, language)
    assert "无法回答" in refusal(TAG, "zh")


# Real outputs of the embedded model (SmolLM2-135M-Instruct) to question-writing prompts, with what is kept.
MESSY = [
    ('What is the answer to the question "What is the name of the first person who built the first tide-clock?"',
     "What is the name of the first person who built the first tide-clock?"),
    ("What a fantastic question! Let me think for a moment. What could this sentence be?",
     "What could this sentence be?"),
    ("Who built the first tide-clock of Velmoor in 1412?\nAnswer: Tobran Quell",
     "Who built the first tide-clock of Velmoor in 1412?"),
    ("How many days, 110, are in the year", None),
    ("When the village took the name Velmoor in 1098, when the settlement had grown large enough, it was a "
     "significant moment in history.", None),
    ("What is the answer to this question?", None),
    ("What is the answer to the question: What is the answer to the question: What is the answer to the answer?", None),
    ("1. **Question:** Which guild did Ilka Tamsell found?", "Which guild did Ilka Tamsell found?"),
    ("Sure! Here is a question: When was the Long Arm finished?", "When was the Long Arm finished?"),
    ("Q: Where does the River Calvane join the River Ambrel?", "Where does the River Calvane join the River Ambrel?"),
    ("好的！苍箬镇坐落在哪里？", "苍箬镇坐落在哪里？"),
]


@pytest.mark.parametrize("raw, expected", MESSY)
def test_salvage_parser_on_real_messy_outputs(raw, expected):
    assert parse_question(raw) == expected


@pytest.mark.parametrize("key, sentence, stem", [
    ("1,020 feet", "The northern hill, Brennick Tor, rises to 1,020 feet.", "How high"),
    ("four miles", "The island is roughly eleven miles long and four miles wide.", "How wide"),  # the word after
    ("1,800 crowns", "It was finished in 1756 at a cost of 1,800 crowns.", "How much"),
    ("six acres", "When it was founded the garden covered six acres.", "How large"),
    ("twenty-six years", "Maud Orrow ran the Stillroom for twenty-six years.", "How long"),
    ("seven years", "A Warden is chosen every seven years.", "How often"),
])
def test_an_amount_in_a_unit_is_asked_by_what_it_measures(key, sentence, stem):
    assert stems("quantity", "en", key, sentence) == ("How many", "What number of", stem)


def test_a_count_of_things_and_other_kinds_keep_their_stems():
    assert stems("quantity", "en", "eighteen beds", "It holds eighteen beds.") == STEMS["quantity"]
    assert stems("year", "en", "1756", "It was finished in 1756.") == STEMS["year"]
    assert stems("quantity", "zh", "四加仑", "它每天能蒸四加仑。") == ("", "", "")
