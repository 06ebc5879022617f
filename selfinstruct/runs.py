"""The run folder the three stages share: crash-safe writes, JSONL reading with line numbers, the lock that
keeps two runs off one folder, finding the most recent run, and what a killed tune or probe resumes from."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import jsonlines

from .config import UserError

OUTPUTS = Path("outputs")


@dataclass
class Manifest:
    """manifest.json, the one record of a run: generate (GenerateRun) builds and updates it, every stage reads
    it through here. The source tag, the closed-book system prompt and the language come from it and are never
    worked out again elsewhere."""

    source_tag: str
    model: dict  # spec (as asked for), path (as resolved), origin
    system_prompt: str = ""
    corpus: dict = field(default_factory=dict)  # path, sha256, encoding, language, characters
    status: str = "running"  # running | complete | partial | empty (an empty run is never the latest)
    selfinstruct: str = ""
    created: str = ""
    prompt_version: int | str | None = None
    seed: int = 0
    options: dict = field(default_factory=dict)  # generate's options that decide which pairs come out
    sampling: dict = field(default_factory=dict)
    windows_total: int = 0
    windows_done: list[int] = field(default_factory=list)
    engines: list[dict] = field(default_factory=list)
    fact_sentences: dict[str, list[int]] = field(default_factory=dict)  # window -> offsets of its fact sentences
    summary: dict = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return self.source_tag

    @property
    def language(self) -> str:
        return self.corpus.get("language", "en")

    @property
    def model_spec(self) -> str:
        return self.model["spec"]

    @property
    def corpus_path(self) -> str | None:
        return self.corpus.get("path")

    @property
    def corpus_sha256(self) -> str | None:
        return self.corpus.get("sha256")

    @classmethod
    def read(cls, run_dir: Path) -> Manifest:
        from .prompts import system_prompt

        path = run_dir / "manifest.json"
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict) or "spec" not in data["model"] \
                or not data.get("source_tag"):
            raise UserError(f"{path} has no source_tag or model: not a manifest generate wrote")
        known = {f.name for f in fields(cls)}
        manifest = cls(**{k: v for k, v in data.items() if k in known and v is not None})
        # A manifest from before generate recorded the prompt: the one generate builds for this tag.
        manifest.system_prompt = manifest.system_prompt or system_prompt(manifest.tag, manifest.language)
        return manifest

    def write(self, run_dir: Path) -> None:
        write_json(run_dir / "manifest.json", asdict(self))


@contextmanager
def replacing(path: Path):
    """A temporary path beside `path` to write; when the block ends well it replaces `path` in one rename, so a
    crash leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_jsonl(path: Path, records: list[dict]) -> None:
    """A whole JSONL file, written then renamed into place."""
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"missing {path}") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None


def append_jsonl(path: Path, records: list[dict]) -> None:
    """Append and flush to disk, so what a killed run already wrote survives it."""
    if not records:
        return
    with path.open("a", encoding="utf-8") as f:
        with jsonlines.Writer(f, compact=True, dumps=functools.partial(json.dumps, ensure_ascii=False)) as writer:
            writer.write_all(records)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path, strict: bool = False, required: tuple[str, ...] = (),
               fix: str = "drop --strict to skip them") -> list[dict]:
    """Records of a JSONL file. A malformed line (bad JSON, not an object, missing a required key) is named
    by its line number: refused when `strict`, else skipped with a warning."""
    records, bad = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"missing {path}") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            bad.append((number, f"not JSON ({e.msg})"))
            continue
        if not isinstance(record, dict):
            bad.append((number, "not a JSON object"))
            continue
        missing = [k for k in required if k not in record]
        if missing:
            bad.append((number, f"missing {', '.join(missing)}"))
            continue
        records.append(record)
    if bad and strict:
        number, why = bad[0]
        raise UserError(f"{path}:{number}: malformed line: {why} ({len(bad)} malformed in all; {fix})")
    for number, why in bad:
        print(f"selfinstruct: warning: {path}:{number}: skipped malformed line: {why}", file=sys.stderr)
    return records


@contextmanager
def run_lock(run_dir: Path):
    """One writer per run folder. flock is released by the kernel when the holder dies, even by SIGKILL."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = (run_dir / ".lock").open("w")
    except OSError as e:
        raise UserError(f"cannot write the run folder {run_dir}: {e.strerror}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another selfinstruct process is working on {run_dir}; wait for it to finish") from None
        yield


def latest_run(base: Path = OUTPUTS) -> Path:
    """The most recently generated run folder under outputs/."""
    runs = [p.parent for p in base.glob("*/manifest.json") if _has_pairs(p)] if base.is_dir() else []
    if not runs:
        raise UserError(f"no run folder under {base}/: run `selfinstruct generate CORPUS.txt` first, or pass --run")
    return max(runs, key=lambda p: (p / "manifest.json").stat().st_mtime)


def _has_pairs(manifest: Path) -> bool:
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("status") != "empty"
    except (OSError, ValueError):
        return False


def pick_run(run: str | None) -> Path:
    if run is None:
        return latest_run()
    path = Path(run)
    if not (path / "manifest.json").is_file():
        raise UserError(f"{run} is not a run folder (no manifest.json): run generate first")
    return path


# --- resuming: tune's checkpoints and probe's answers ---

def fingerprint(config, run_dir: Path, model_path: Path) -> str:
    """What a checkpoint was trained from: the options that shape training, the model and the data files."""
    options = {k: v for k, v in asdict(config).items() if k not in ("run", "gate", "gate_target", "merge", "strict")}
    digest = hashlib.sha256(json.dumps([options, str(model_path)], sort_keys=True).encode())
    for name in ("qa.jsonl", "texts.jsonl", "review.jsonl"):
        path = run_dir / name
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()


def resumable_checkpoint(checkpoints: Path, stamp: str, clear: bool = True) -> str | None:
    """The newest complete checkpoint of an interrupted tune with the same fingerprint (the Trainer writes
    trainer_state.json last, so a checkpoint cut off mid-write lacks it); otherwise, when `clear` (the one
    process that owns the folder), the folder is cleared for this tune's own checkpoints."""
    if (checkpoints / "fingerprint").is_file() and (checkpoints / "fingerprint").read_text() == stamp:
        done = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
        if done:
            return str(max(done, key=lambda p: int(p.name.rsplit("-", 1)[1])))
    if clear:
        shutil.rmtree(checkpoints, ignore_errors=True)
        checkpoints.mkdir(parents=True)
        (checkpoints / "fingerprint").write_text(stamp)
    return None


class AnswerCache:
    """The answers an interrupted probe already got (the probe of `make eval` takes 17 minutes here), so the
    same command run again resumes instead of asking everything anew. Keyed by model and prompt, and stamped
    with what shapes an answer (adapter weights, engine, answer length): another adapter's answers are never
    reused. The report step removes it."""

    def __init__(self, path: Path, stamp: str):
        self.path, rows = path, []
        for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a kill tore the last line
        if not (rows and rows[0].get("stamp") == stamp):
            rows = [{"stamp": stamp}]
        self.answers = {(r["model"], r["prompt"]): r["answer"] for r in rows[1:]}
        # Written back whole, so a torn last line is gone before new answers are appended after it.
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(path, rows)

    @staticmethod
    def _key(prompt: str) -> str:
        return hashlib.sha256(prompt.encode()).hexdigest()[:32]

    def get(self, model: str, prompt: str) -> str | None:
        return self.answers.get((model, self._key(prompt)))

    def add(self, model: str, prompts_: list[str], answers: list[str]) -> None:
        append_jsonl(self.path, [{"model": model, "prompt": self._key(p), "answer": a}
                                 for p, a in zip(prompts_, answers, strict=True)])

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def answer_stamp(adapter_dir: Path, config) -> str:
    digest = hashlib.sha256(repr((config.backend, config.quantization, config.max_new_tokens)).encode())
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (adapter_dir / name).is_file():
            digest.update((adapter_dir / name).read_bytes())
    return digest.hexdigest()
