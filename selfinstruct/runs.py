"""The run folder the three stages share: crash-safe writes, JSONL reading with line numbers, the lock that
keeps two runs off one folder, and finding the most recent run."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import jsonlines

from .config import UserError

OUTPUTS = Path("outputs")


def write_json(path: Path, data) -> None:
    """Write-then-rename: a crash leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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
