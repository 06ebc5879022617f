"""The state of one `generate` run folder: manifest, resume after a crash, per-window commits, progress and
the summary. A window is done only once its pairs and rejects are on disk and the manifest says so; on resume,
records of windows not marked done (a run killed mid-window) are dropped and those windows are redone."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from . import __version__, prompts
from .config import UserError
from .corpus import Window, read_corpus, source_tag, split_windows
from .entities import corpus_entities
from .filters import NearDuplicates
from .models import load_tokenizer, resolve_model
from .runs import Manifest, append_jsonl, run_lock, write_text

# Options that do not change which pairs come out, so a resume may change them. The corpus and the model are
# compared by what they are (the file's hash, the resolved model folder), not by how they were spelled.
FREE_OPTIONS = {"out", "max_windows", "overwrite", "batch_size", "windows_per_step", "corpus", "model", "ray",
                "ray_workers", "ray_cpus", "ray_gpus"}


class GenerateRun:
    def __init__(self, config, run_dir: Path):
        self.config, self.dir = config, run_dir
        self.corpus = read_corpus(config.corpus, config.language)
        self.model = resolve_model(config.model)
        self.tag = config.source_tag or source_tag(self.corpus.sha256)
        self.options = {k: v for k, v in dataclasses.asdict(config).items() if k not in FREE_OPTIONS}
        self.qa_path, self.rejects_path = run_dir / "qa.jsonl", run_dir / "rejects.jsonl"
        self.texts_path = run_dir / "texts.jsonl"  # windows and their restatements, for tune's text mix
        self.manifest_path = run_dir / "manifest.json"
        self.entities = corpus_entities(self.corpus.text, self.corpus.language)
        self.corpus_lower = self.corpus.text.lower()
        self.duplicates = NearDuplicates(config.dedup_threshold)
        self.used_names: set[str] = set()
        self.answerable = self.refused = 0
        self.windows_with_pairs: set[int] = set()
        self.facts: set[str] = set()
        self.sentences_covered: set = set()
        self.origins = Counter()  # who wrote each kept question: model, template, cloze; refusals by name origin
        self.session = Counter()

    def open(self) -> None:
        if self.config.overwrite:
            self.clear()
        existing = Manifest.read(self.dir) if self.manifest_path.exists() else None
        changed = self.changes_against(existing) if existing else []
        if changed:
            raise UserError(f"{self.dir} holds a run with another {', '.join(changed)}; "
                            "pass --overwrite to replace it, or --out for a new folder")
        self.windows = split_windows(self.corpus, load_tokenizer(self.model.path), self.config.window_tokens,
                                     self.config.window_overlap)
        self.manifest = existing or self.new_manifest()
        self.done = set(self.manifest.windows_done)
        self.resume()

    def changes_against(self, old: Manifest) -> list[str]:
        changed = ["corpus"] if old.corpus_sha256 != self.corpus.sha256 else []
        changed += ["model"] if old.model.get("path") != str(self.model.path) else []
        return changed + [k for k in self.options if old.options.get(k) != self.options[k]]

    def clear(self) -> None:
        for name in ("qa.jsonl", "rejects.jsonl", "texts.jsonl", "manifest.json"):
            (self.dir / name).unlink(missing_ok=True)
        for name in ("adapter", "merged", "probe"):  # trained on or probing the data being replaced
            shutil.rmtree(self.dir / name, ignore_errors=True)

    def new_manifest(self) -> Manifest:
        c = self.corpus
        return Manifest(
            source_tag=self.tag, system_prompt=prompts.system_prompt(self.tag, c.language),
            corpus={"path": str(c.path.resolve()), "sha256": c.sha256, "encoding": c.encoding,
                    "language": c.language, "characters": len(c.text)},
            model={"spec": self.model.spec, "path": str(self.model.path), "origin": self.model.origin},
            selfinstruct=__version__, created=time.strftime("%Y-%m-%dT%H:%M:%S"),
            prompt_version=prompts.PROMPT_VERSION, seed=self.config.seed, options=self.options,
            sampling={"first_candidate": "greedy", "others": {"temperature": self.config.temperature,
                                                               "top_p": self.config.top_p},
                      "max_new_tokens": self.config.max_new_tokens},
            windows_total=len(self.windows))

    def resume(self) -> None:
        """Keep the records of finished windows (dropping a torn last line, or the pairs of a window that was
        being written when the run died), and rebuild the run-wide state from them."""
        for path in (self.qa_path, self.rejects_path, self.texts_path):
            if not path.exists():
                continue
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [line for line in lines if _window_of(line) in self.done]
            if len(kept) != len(lines):
                write_text(path, "".join(kept))
        if self.qa_path.exists():
            for line in self.qa_path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                self.count([record])
                if record["answerable"]:
                    self.duplicates.add(record["question"])
                else:
                    self.used_names.add(record["entity"])

    def count(self, records: list[dict]) -> None:
        for r in records:
            self.origins[r.get("origin", "model")] += 1
            if r["answerable"]:
                self.answerable += 1
                self.windows_with_pairs.add(r["window"])
                self.facts.add(r["fact_id"])
                self.sentences_covered.add(r["evidence"][0] if r.get("evidence") else r["fact_id"])
            else:
                self.refused += 1

    def todo(self) -> list[Window]:
        limit = self.config.max_windows or len(self.windows)
        return [w for w in self.windows[:limit] if w.index not in self.done]

    def seen_until(self, window: Window) -> int:
        return self.windows[window.index - 1].end if window.index > 0 else 0

    def record_engine(self, record: dict) -> None:
        if record not in self.manifest.engines:
            self.manifest.engines.append(record)
        self.manifest.write(self.dir)

    def commit(self, result) -> None:
        append_jsonl(self.qa_path, result.pairs)
        append_jsonl(self.rejects_path, result.rejects)
        append_jsonl(self.texts_path, result.texts)
        self.done.add(result.window.index)
        self.manifest.windows_done = sorted(self.done)
        self.manifest.fact_sentences[str(result.window.index)] = result.fact_sentences
        self.manifest.write(self.dir)  # the commit point of this window
        self.session.update(pairs=len(result.pairs), rejects=len(result.rejects))

    @contextmanager
    def progress(self, total: int):
        """A bar over windows with pairs, rejects and tokens/s; yields the function that advances it by a
        window and the engine tokens spent on it."""
        from tqdm import tqdm

        started, tokens = time.time(), 0
        with tqdm(total=total, unit="window", desc="generate", dynamic_ncols=True) as bar:
            def advance(generated_tokens: int):
                nonlocal tokens
                tokens += generated_tokens
                bar.set_postfix(pairs=self.session["pairs"], rejects=self.session["rejects"],
                                tok_s=f"{tokens / max(time.time() - started, 1e-9):.0f}", refresh=False)
                bar.update()

            yield advance
        self.session["generated_tokens"] = tokens
        self.session["generate_seconds"] = time.time() - started

    def finish(self, wall: float) -> dict:
        rejects = Counter()
        if self.rejects_path.exists():
            for line in self.rejects_path.read_text(encoding="utf-8").splitlines():
                rejects[json.loads(line)["reason"]] += 1
        seconds = self.session.get("generate_seconds", 0)
        summary = {"run_dir": str(self.dir), "windows_total": len(self.windows), "windows_done": len(self.done),
                   "pairs": self.answerable + self.refused, "answerable": self.answerable,
                   "unanswerable": self.refused, "facts": len(self.facts), **self.fact_coverage(),
                   "origins": dict(self.origins),
                   "rejects": sum(rejects.values()),
                   "rejects_by_reason": dict(rejects),
                   "coverage": len(self.windows_with_pairs) / max(len(self.done), 1), "wall_seconds": wall,
                   "this_run": {**self.session, "pairs_per_minute": 60 * self.session["pairs"] / seconds
                                if seconds else None,
                                "tokens_per_second": self.session["generated_tokens"] / seconds if seconds else None}}
        # A run with no pair is kept for its rejects but is never the "latest run" that tune and probe pick.
        finished = "complete" if len(self.done) == len(self.windows) else "partial"
        self.manifest.status = finished if summary["pairs"] else "empty"
        self.manifest.summary = summary
        self.manifest.write(self.dir)
        return summary


    def fact_coverage(self) -> dict:
        """Fact candidates are the sentences that state a name, number, date or definition; a fact is covered
        once one of its questions was accepted. Per 1,000 words says how densely the corpus was asked about."""
        found = {s for w, starts in self.manifest.fact_sentences.items() if int(w) in self.done
                 for s in starts}
        text = self.text_done()
        words = len(text.split()) if self.corpus.language == "en" else len(text) / 1.5  # zh: ~1.5 characters a word
        covered = len(found & self.sentences_covered)
        return {"fact_candidates": len(found), "facts_covered": covered,
                "fact_coverage": round(covered / len(found), 4) if found else None,
                "facts_per_1000_words": round(1000 * len(found) / max(words, 1), 1)}

    def text_done(self) -> str:
        """The corpus text the finished windows cover, overlaps counted once (a --max-windows run asked about
        only that much)."""
        pieces, until = [], 0
        for w in sorted((self.windows[i] for i in self.done), key=lambda w: w.start):
            pieces.append(self.corpus.text[max(w.start, until):w.end])
            until = max(until, w.end)
        return "".join(pieces)


def _window_of(line: str) -> int | None:
    try:
        return json.loads(line)["window"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None  # a line torn by a kill mid-write


def check_out_folder(run_dir: Path, overwrite: bool) -> None:
    """A folder is a run folder (its manifest.json), an empty one, or refused: resuming would drop the records
    of a qa.jsonl that no manifest vouches for."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} is a file, not a folder")
    if overwrite or not run_dir.is_dir() or (run_dir / "manifest.json").exists():
        return
    if any(p.name != ".lock" for p in run_dir.iterdir()):
        raise UserError(f"{run_dir} is not a run folder (no manifest.json) and is not empty: choose another --out, "
                        "or pass --overwrite to write the run there (its qa.jsonl, rejects.jsonl and texts.jsonl "
                        "are replaced)")


@contextmanager
def open_run(config):
    run_dir = config.run_dir()
    check_out_folder(run_dir, config.overwrite)
    state = GenerateRun(config, run_dir)  # checks the corpus and the model before anything is created
    with run_lock(run_dir):
        state.open()
        yield state
