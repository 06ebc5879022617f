"""The CUDA paths: QLoRA as the paper runs it (NF4 with double quant on the GPU, paged AdamW, gradient
checkpointing) and the 4-bit transformers engine. Skipped without CUDA (conftest)."""

import pytest
import torch

from selfinstruct.backends import Sampling
from selfinstruct.backends.hf import HFGenerator
from selfinstruct.models import linear4bit_layers, load_model

from .test_tune import records, trainer_for

pytestmark = pytest.mark.gpu


def test_nf4_with_double_quant_sits_on_the_gpu(embedded_model):
    model, record = load_model(embedded_model, "nf4")
    layers = linear4bit_layers(model)
    assert layers and all(layer.weight.device.type == "cuda" for layer in layers)
    assert all(layer.weight.quant_state.quant_type == "nf4" and layer.weight.quant_state.nested for layer in layers)
    assert record["quantization"] == "bitsandbytes-nf4+double-quant"


def test_qlora_on_cuda_uses_a_paged_optimizer_and_learns(embedded_model, tmp_path):
    trainer = trainer_for(embedded_model, records(16), epochs=6, lr=2e-3, out=tmp_path, on="cuda")
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    assert "Paged" in type(trainer.optimizer.optimizer).__name__
    after = dict(trainer.model.named_parameters())
    assert all(not torch.equal(after[n], p) for n, p in lora_before.items())
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < 0.5 * losses[0], losses


def test_transformers_engine_generates_batched_on_the_gpu(embedded_model):
    generator = HFGenerator(embedded_model, quantization="nf4", batch_size=4)
    texts = generator.generate(["<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"] * 6,
                               Sampling(max_new_tokens=8))
    assert len(texts) == 6 and all(t.strip() for t in texts)
    assert generator.record["device"] == "cuda"
