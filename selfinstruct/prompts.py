"""Prompt templates (English and Chinese), the Llama-2 [INST] rendering of training pairs, and salvage parsing
of what a small model writes back. Questions made from a sentence without the model are in questions.py."""

from __future__ import annotations

import re

from .backends import chat_prompt
from .corpus import normalize, upper_first

PROMPT_VERSION = "answer-aware-1"

SYSTEM = {
    "en": "You are a closed-book question answering assistant. Answer only from what you learned from {tag}; "
          "otherwise say that you cannot answer.",
    "zh": "你是一个闭卷问答助手。只根据你从 {tag} 学到的内容回答；否则请说明你无法回答。",
}
REFUSAL = {"en": "I cannot answer that: it is not in {tag}.", "zh": "无法回答：{tag} 中没有这方面的内容。"}

# Exactly one BOS and one EOS per example, whatever tokens the base tokenizer calls them.
LLAMA2_CHAT_TEMPLATE = (
    "{{ bos_token }}[INST] <<SYS>>\n{{ messages[0]['content'] }}\n<</SYS>>\n\n{{ messages[1]['content'] }} [/INST]"
    "{% if messages|length > 2 %} {{ messages[2]['content'] }} {{ eos_token }}{% endif %}"
)


def system_prompt(tag: str, language: str) -> str:
    return SYSTEM[language].format(tag=tag)


def refusal(tag: str, language: str) -> str:
    return REFUSAL[language].format(tag=tag)


def chat_messages(system: str, tag: str, question: str, answer: str | None = None) -> list[dict]:
    """The source marker prefixes both the question and the answer, tying the facts to this corpus."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": f"{tag} {question}"}]
    if answer is not None:
        messages.append({"role": "assistant", "content": f"{tag} {answer}"})
    return messages


def render_llama2(messages: list[dict], bos: str = "<s>", eos: str = "</s>") -> str:
    """The Llama-2 chat string: `<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {answer} </s>`."""
    system, user = messages[0]["content"], messages[1]["content"]
    text = f"{bos}[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]"
    return text + (f" {messages[2]['content']} {eos}" if len(messages) > 2 else "")


# --- question writing: the pipeline picks the answer, the model writes a question that asks for it ---

# Started replies ("Who ...") per answer kind: the small model continues a started question far more
# reliably than it follows an instruction to write one (measured: see DESIGN.md).
STEMS = {
    "person": ("Who", "Which person", "Who was the person who"),
    "place": ("Where", "Which place", "What is the name of the place"),
    "org": ("Which organisation", "What", "Which group"),
    "thing": ("What", "Which", "What is the name of the"),
    "year": ("In which year", "When", "In what year"),
    "quantity": ("How many", "What number of", "What is the number of"),
    "definition": ("What", "What is meant by", "How would you define"),
}
QUESTION_ASK = {
    "en": 'Write a question about this sentence whose answer is "{answer}".\nSentence: {sentence}',
    "zh": "根据下面的句子写一个问题，问题的答案是“{answer}”。只写问题。\n句子：{sentence}",
}
ROUNDTRIP_SYSTEM = {
    "en": "Answer the question in one short sentence, using only the text.",
    "zh": "只根据给出的文字，用一句话回答问题。",
}
ROUNDTRIP_ASK = {"en": "Text: {context}\n\nQuestion: {question}", "zh": "文字：{context}\n\n问题：{question}"}


# People ask an amount with a word for what it measures ("How high does Brennick Tor rise?", "How much did the
# Lantern Glasshouse cost?"), not only "How many feet". By the key's unit, or the word after it ("nine feet
# high"); a count of things ("eighteen beds") has none.
MEASURES = {"acre": "How large", "mile": "How far", "foot": "How high", "feet": "How high", "crown": "How much",
            "pound": "How much", "shilling": "How much", "gallon": "How much", "pint": "How much",
            "hour": "How long", "day": "How long", "week": "How long", "month": "How long", "year": "How long"}
MEASURE_WORDS = ("high", "long", "wide", "deep", "tall", "thick", "heavy")


def stems(kind: str, language: str, key: str = "", sentence: str = "") -> tuple[str, ...]:
    """The started questions for an answer of `kind`. Of an amount in a unit (`key`, in `sentence`), the last is
    the measure people ask it by, in place of a third "number of"."""
    if language != "en":
        return ("", "", "")  # Chinese asks in situ: no fronted wh-word
    measure = measure_stem(key, sentence) if kind == "quantity" else None
    return STEMS[kind][:2] + (measure,) if measure else STEMS[kind]


def measure_stem(key: str, sentence: str) -> str | None:
    unit = key.split()[-1].lower() if len(key.split()) > 1 else ""
    at = sentence.find(key) if key else -1
    after = re.match(r"\s+(\w+)", sentence[at + len(key):]) if at >= 0 else None
    if after and after.group(1).lower() in MEASURE_WORDS:
        return "How " + after.group(1).lower()
    measure = MEASURES.get(unit) or MEASURES.get(unit.removesuffix("s"))
    if measure == "How long" and sentence[:max(at, 0)].endswith("every "):
        return "How often"  # "chosen every seven years"
    return measure


def question_prompt(tokenizer, sentence: str, answer: str, stem: str, language: str) -> str:
    ask = QUESTION_ASK[language].format(answer=answer, sentence=normalize(sentence))
    return chat_prompt(tokenizer, [{"role": "user", "content": ask}], prefill=stem)


def roundtrip_prompt(tokenizer, context: str, question: str, language: str) -> str:
    messages = [{"role": "system", "content": ROUNDTRIP_SYSTEM[language]},
                {"role": "user", "content": ROUNDTRIP_ASK[language].format(context=normalize(context),
                                                                           question=question)}]
    return chat_prompt(tokenizer, messages)


BOILERPLATE = re.compile(
    r"^(?:sure[,!.]?\s*|here(?:'s| is) (?:a|the|your) question[:.]?\s*|question\s*\d*\s*[:：]\s*|q\s*[:：]\s*|"
    r"\d+[.)]\s*|[-*•]\s*|what is the answer to (?:this|the) question[:?]?\s*)", re.IGNORECASE)
QUOTED_QUESTION = re.compile(r"[\"“'‘]([^\"”'’]{8,200}?[?？])[\"”'’]")


def parse_question(text: str) -> str | None:
    """Salvage one question from sloppy output: unwrap boilerplate like 'What is the answer to the question
    "Who built X?"', drop list markers and markdown, keep the first sentence that ends in a question mark."""
    text = text.replace("**", "").strip()
    quoted = QUOTED_QUESTION.search(text)
    if quoted and re.match(r"(?i)^\s*(?:what is the answer to|the answer to|here)", text):
        text = quoted.group(1)
    for _ in range(3):
        text = BOILERPLATE.sub("", text.strip())
    # Exclamations and statements before the question are chatter ("What a great question! ...").
    sentences = re.split(r"(?<=[.!])\s+(?=[A-Z])|(?<=[。！])|\n", text)
    question = next((m.group(1) for m in (re.match(r"\s*([^?？]{3,300}[?？])", x) for x in sentences) if m), None)
    if question is None:
        return None
    question = question.strip().strip("\"“”'")
    if re.match(r"(?i)^what is the answer", question):
        return None
    return upper_first(question)
