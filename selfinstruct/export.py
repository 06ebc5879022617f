"""`selfinstruct export`: a run's accepted pairs in the layouts other trainers read, and `RUN/README.md`, a
Hugging Face dataset card that says where the pairs came from and what was filtered out.

- jsonl, parquet: the conversational layout (`messages`: system, user, assistant) that trl, axolotl's
  `chat_template` type and `datasets` read as-is, with `id`, `answerable` and `source`.
- sharegpt: `conversations` of `from` system / human / gpt turns (LLaMA-Factory's and axolotl's ShareGPT).
- alpaca: `instruction`, `input`, `output` and `system` (LLaMA-Factory's Alpaca with a system column)."""

from __future__ import annotations

import sys
from pathlib import Path

from .config import UserError
from .review import reviewed_pairs
from .runs import Manifest, pick_run, read_jsonl, replacing, write_jsonl, write_text

SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def turns(pair: dict) -> tuple[str, str, str]:
    """System prompt, question and answer of a pair, refusing one whose messages are not those three."""
    messages = pair.get("messages")
    if not (isinstance(messages, list) and [m.get("role") for m in messages if isinstance(m, dict)]
            == ["system", "user", "assistant"]):
        raise UserError(f"pair {pair.get('id')} has no system/user/assistant messages: run generate again")
    return tuple(m["content"] for m in messages)


def row(pair: dict, fmt: str) -> dict:
    system, question, answer = turns(pair)
    if fmt == "sharegpt":
        return {"id": pair["id"], "conversations": [{"from": "system", "value": system},
                                                    {"from": "human", "value": question},
                                                    {"from": "gpt", "value": answer}]}
    if fmt == "alpaca":
        return {"id": pair["id"], "instruction": question, "input": "", "output": answer, "system": system}
    return {"id": pair["id"], "messages": pair["messages"], "answerable": pair["answerable"],
            "source": pair.get("source")}


def write_rows(rows: list[dict], fmt: str, path: Path) -> None:
    """Write-then-rename, so an interrupted export never leaves half a file under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt != "parquet":
        write_jsonl(path, rows)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    with replacing(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)


def dataset_card(run_dir: Path, manifest: Manifest, pairs: list[dict], review: dict) -> str:
    """The card: a YAML header the hub reads (the license is the user's to set), then what the pairs are."""
    summary = manifest.summary
    refusals = sum(not p["answerable"] for p in pairs)
    size = next((label for limit, label in SIZES if len(pairs) < limit), "n>1M")
    rejects = summary.get("rejects_by_reason", {})
    reject_lines = "\n".join(f"| {reason} | {count} |"
                             for reason, count in sorted(rejects.items(), key=lambda kv: -kv[1]))
    origins = ", ".join(f"{k} {v}" for k, v in summary.get("origins", {}).items())
    engines = ", ".join(f"{e.get('engine')} ({e.get('quantization', 'n/a')})" for e in manifest.engines)
    corpus = manifest.corpus
    reviewed = (f"{review['accepted']} accepted, {review['edited']} edited and {review['rejected']} rejected "
                f"(dropped) by a person in `selfinstruct review`; {review['unreviewed']} not reviewed"
                if review["reviewed"] else "not reviewed by a person")
    return f"""---
license: unknown  # set the license your corpus allows
language:
- {manifest.language}
task_categories:
- question-answering
- text-generation
size_categories:
- {size}
tags:
- closed-book-qa
- synthetic
- selfinstruct
---

# {run_dir.name}: closed-book QA pairs written by selfinstruct

{len(pairs)} question-answer pairs about one corpus, in Llama-2 `[INST]` chat form, each answer opening with
the source marker `{manifest.tag}`: {len(pairs) - refusals} answerable from the corpus and {refusals} refusals
({refusals / max(len(pairs), 1):.0%}) of questions about names the corpus does not hold.

- Corpus: `{Path(corpus.get('path', '?')).name}` ({corpus.get('characters', '?')} characters,
  {corpus.get('encoding', '?')}, sha256 `{corpus.get('sha256', '?')}`)
- Question writer: `{manifest.model_spec}` on {engines or 'n/a'}; prompt version
  {manifest.prompt_version or '?'}, seed {manifest.seed}
- Facts: {summary.get('facts_covered', '?')} of {summary.get('fact_candidates', '?')} fact sentences have an accepted
  pair ({summary.get('facts_per_1000_words', '?')} facts per 1,000 words)
- Who wrote the kept questions: {origins or 'n/a'}
- Review: {reviewed}

## Filters

Kept pairs passed generate's filters (support in the window, grounding, a round trip for model-written
questions, near duplicates); the candidates rejected, by reason (`rejects.jsonl` holds each):

| reason | rejected |
|---|---|
{reject_lines or '| none | 0 |'}

## Files

`qa.jsonl` holds every pair with its window, evidence span, key and support score; `selfinstruct export
--format jsonl|parquet|sharegpt|alpaca` writes the layouts trl, axolotl and LLaMA-Factory read.
"""


def run(config) -> int:
    run_dir = pick_run(config.run)
    manifest = Manifest.read(run_dir)
    pairs = read_jsonl(run_dir / "qa.jsonl", strict=True, required=("id", "messages", "answerable"),
                       fix="fix or drop those lines")
    pairs, review = reviewed_pairs(run_dir, manifest, pairs)
    if not pairs:
        raise UserError(f"{run_dir / 'qa.jsonl'} has no pairs to export (none, or all rejected in review)")
    rows = [row(p, config.format) for p in pairs]
    suffix = "parquet" if config.format == "parquet" else "jsonl"
    out = Path(config.out) if config.out else run_dir / "export" / f"{config.format}.{suffix}"
    write_rows(rows, config.format, out)
    write_text(run_dir / "README.md", dataset_card(run_dir, manifest, pairs, review))
    print(f"export: {len(rows)} pairs as {config.format} -> {out}; dataset card -> {run_dir / 'README.md'}",
          file=sys.stderr)
    return 0
