"""`tune --select N`: train on N pairs chosen for spread, by k-center greedy selection on embeddings of their
questions (mean-pooled last hidden states of the run's own model, so nothing new is downloaded). Every fact
(and every refusal) gets one pair before any fact gets a second phrasing."""

from __future__ import annotations

import random


def question_embeddings(model, tokenizer, questions: list[str], batch_size: int = 32):
    """One vector a question: its tokens' last hidden states, averaged over the real (unpadded) tokens."""
    import torch

    from .models import keep_nf4_trainable

    vectors = []
    for i in range(0, len(questions), batch_size):
        enc = tokenizer(questions[i:i + batch_size], return_tensors="pt", padding=True)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.inference_mode():
            hidden = model(**enc, output_hidden_states=True).hidden_states[-1].float()
        mask = enc["attention_mask"].unsqueeze(-1).float()
        vectors.append((hidden * mask).sum(1) / mask.sum(1))
    keep_nf4_trainable(model)  # an inference pass may have repacked NF4 weights into a layout training ignores
    return torch.cat(vectors).cpu()


def k_center(embeddings, groups: list[str], n: int, seed: int) -> list[int]:
    """Indices of `n` points, each the one farthest from all chosen so far (greedy k-center), drawn first from
    the groups not yet represented and only then from the rest. The first point is drawn with `seed`."""
    import torch

    count = len(groups)
    if n >= count:
        return list(range(count))
    chosen, covered = [], set()
    distance = torch.full((count,), float("inf"))
    pick = random.Random(seed).randrange(count)
    while True:
        chosen.append(pick)
        covered.add(groups[pick])
        distance = torch.minimum(distance, torch.linalg.vector_norm(embeddings - embeddings[pick], dim=1))
        distance[pick] = -1.0  # never chosen twice
        if len(chosen) == n:
            return chosen
        uncovered = torch.tensor([g not in covered for g in groups])
        pool = distance.where(uncovered, torch.tensor(-1.0)) if uncovered.any() else distance
        pick = int(pool.argmax())
