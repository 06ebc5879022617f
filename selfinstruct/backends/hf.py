"""transformers engine: batched generation with left padding, on the 4-bit (or unquantized) model."""

from __future__ import annotations

from collections import defaultdict
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from . import Sampling, per_prompt


class HFGenerator:
    name = "transformers"

    def __init__(self, model_path: Path, quantization: str = "nf4", batch_size: int = 32,
                 adapter: Path | None = None, model=None, tokenizer=None):
        from ..models import load_model, load_tokenizer

        self.tokenizer = tokenizer or load_tokenizer(model_path)
        self.tokenizer.padding_side = "left"  # decoder-only: new tokens must follow each prompt directly
        if model is None:
            model, info = load_model(model_path, quantization)
        else:
            info = {"quantization": "as given"}
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.eval()
        self.batch_size = batch_size
        self.record = {"engine": "transformers", **info, "batch_size": batch_size}
        self.generated_tokens = 0

    def base_only(self):
        """Within this context the adapter is off: the same loaded weights answer as the base model."""
        return self.model.disable_adapter() if hasattr(self.model, "disable_adapter") else nullcontext()

    def generate(self, prompts: list[str], sampling: Sampling | list[Sampling]) -> list[str]:
        # One generate() call takes one set of sampling settings, so group by them (all but the seed: a
        # batch shares one random stream); sorting each group by length keeps the padding small.
        samplings = per_prompt(sampling, len(prompts))
        groups: dict[Sampling, list[int]] = defaultdict(list)
        for i, s in enumerate(samplings):
            groups[replace(s, seed=0)].append(i)
        texts: list[str] = [""] * len(prompts)
        for indices in groups.values():
            indices.sort(key=lambda i: len(prompts[i]))
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start:start + self.batch_size]
                s = samplings[batch[0]]
                for i, text in zip(batch, self._generate_batch([prompts[i] for i in batch], s), strict=True):
                    texts[i] = text
        return texts

    def _generate_batch(self, prompts: list[str], s: Sampling) -> list[str]:
        import torch

        # Chat templates already hold any BOS the model wants; adding another would shift it off-distribution.
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(self.model.device)
        kwargs = {"max_new_tokens": s.max_new_tokens, "do_sample": s.temperature > 0,
                  "pad_token_id": self.tokenizer.pad_token_id}
        if s.temperature > 0:
            kwargs.update(temperature=s.temperature, top_p=s.top_p)
            torch.manual_seed(s.seed)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if s.stop:
            kwargs.update(stop_strings=list(s.stop), tokenizer=self.tokenizer)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:]
        self.generated_tokens += self._count(new)
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [_cut_at_stop(t, s.stop) for t in texts]

    def _count(self, new) -> int:
        """Generated tokens up to and including each sequence's first EOS (the rest is padding)."""
        eos = self.tokenizer.eos_token_id
        total = 0
        for row in new.tolist():
            total += row.index(eos) + 1 if eos in row else len(row)
        return total


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """transformers stops after a stop string but keeps it; vLLM drops it. Make both drop it."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]
