"""Shared fixtures: the embedded model (converted once into a test cache), a tiny random Llama that
shares its tokenizer (fast unit tests), and a fake generator with canned replies (pipeline tests)."""

from __future__ import annotations

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

    def generate(self, prompts, sampling):
        self.prompts.extend(prompts)
        texts = [self.reply(p) for p in prompts]
        self.generated_tokens += sum(len(t.split()) for t in texts)
        return texts
