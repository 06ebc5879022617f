"""Shared fixtures: the embedded model (converted once into a test cache), a tiny random Llama that
shares its tokenizer (fast unit tests), and a fake generator with canned replies (pipeline tests)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Keep converted models out of the user's home and shared between test runs.
os.environ.setdefault("SELFINSTRUCT_HOME", str(REPO / ".cache" / "selfinstruct-test"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the network
SAMPLE_EN = REPO / "corpora" / "harbour_of_velmoor.txt"
SAMPLE_ZH = REPO / "corpora" / "cangruo_chronicle_zh.txt"


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    from selfinstruct.models import resolve_model

    return resolve_model("smollm2-135m-instruct").path


@pytest.fixture(scope="session")
def tiny_model(embedded_model, tmp_path_factory) -> Path:
    """A 2-layer random Llama with the embedded model's tokenizer: real shapes, milliseconds per step."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class FakeGenerator:
    """Answers prompts from a function (prompt -> text), so pipeline tests run without a model."""

    name = "fake"

    def __init__(self, reply, tokenizer=None):
        self.reply = reply
        self.tokenizer = tokenizer
        self.record = {"engine": "fake", "quantization": "none"}
        self.generated_tokens = 0
        self.prompts: list[str] = []

    @contextlib.contextmanager
    def base_only(self):
        self.adapter_on = False
        try:
            yield
        finally:
            self.adapter_on = True

    adapter_on = True

    def generate(self, prompts, sampling):
        self.prompts.extend(prompts)
        texts = [self.reply(p) for p in prompts]
        self.generated_tokens += sum(len(t.split()) for t in texts)
        return texts


def scripted_reply(prompt: str) -> str:
    """A stand-in question writer and answerer with the embedded model's manners: question prompts get a
    question about the sentence (or, for one stem, chatter the parser must reject); round-trip prompts get
    the context copied back, as the small model often does."""
    import re

    if "Question:" in prompt or "问题：" in prompt:  # round trip: copy the context
        return re.search(r"(?:Text|文字)[:：] ?(.*?)\n", prompt).group(1)
    sentence = re.search(r"(?:Sentence: |句子：)(.*?)<\|im_end\|>", prompt, re.S).group(1)
    key = re.search(r'answer is "(.*?)"|答案是“(.*?)”', prompt)
    key = key.group(1) or key.group(2)
    if "答案是" in prompt:
        return sentence.replace(key, "什么").rstrip("。") + "？"
    if prompt.endswith("Which group"):
        return " What a lovely sentence! I am not sure."
    words = [w for w in re.findall(r"[a-z]{4,}", sentence) if w not in key.lower()]
    return f" is linked to the {' '.join(words[:3])} in {len(words)} ways?"


@pytest.fixture
def fake_engine(monkeypatch):
    """Route load_generator to a FakeGenerator with the real tokenizer of the model asked for."""
    import selfinstruct.backends as backends
    from selfinstruct.models import load_tokenizer

    made = []

    def load(model_path, *args, **kwargs):
        made.append(FakeGenerator(scripted_reply, load_tokenizer(model_path)))
        return made[-1]

    monkeypatch.setattr(backends, "load_generator", load)
    return made
