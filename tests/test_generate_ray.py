"""generate --ray on a local Ray instance with two CPU workers on the transformers engine: the same pairs and
rejects as one process, and a worker killed mid-run has its windows redone, nothing lost or duplicated."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO, SAMPLE_EN

pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a local Ray instance takes 10-20 s to start here

# One window per engine step in both runs, so batching cannot change what the engine computes; one torch
# thread in the single process too, as in each Ray worker (1 CPU each).
ARGS = ["--backend", "transformers", "--window-tokens", "150", "--window-overlap", "20", "--max-windows", "6",
        "--windows-per-step", "1"]
# Loaded at start-up by every Python process that has this folder on its path, Ray's workers included: each
# engine pass then takes a second, so a worker can be killed while it holds a window.
SLOW_ENGINE = """
import time
from selfinstruct.backends import hf
real = hf.HFGenerator.generate
def slow(self, *args, **kwargs):
    time.sleep(1.0)
    return real(self, *args, **kwargs)
hf.HFGenerator.generate = slow
"""


def generate(model, out: Path, *extra, env=None, wait=True):
    command = [sys.executable, "-m", "selfinstruct", "generate", str(SAMPLE_EN), "--model", str(model),
               "--out", str(out), *ARGS, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    if not wait:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def records(run: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (run / name).read_text(encoding="utf-8").splitlines()]


def pairs(run: Path) -> list[tuple]:
    return [(r["id"], r["question"], r["answer"]) for r in records(run, "qa.jsonl")]


@pytest.fixture(scope="module")
def one_process(tiny_model, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ray") / "one"
    generate(tiny_model, run)
    return run


def test_two_ray_workers_give_the_pairs_of_one_process(one_process, tiny_model, tmp_path):
    result = generate(tiny_model, tmp_path / "ray", "--ray", "--ray-workers", "2")
    assert "2 Ray workers" in result.stderr
    assert pairs(tmp_path / "ray") == pairs(one_process) and len(pairs(one_process)) > 10
    assert records(tmp_path / "ray", "rejects.jsonl") == records(one_process, "rejects.jsonl")  # the model's raw text
    assert records(tmp_path / "ray", "texts.jsonl") == records(one_process, "texts.jsonl")
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    single = json.loads((one_process / "manifest.json").read_text())
    assert manifest["engines"][0]["ray"]["workers"] == 2
    for key in ("status", "options", "windows_done", "fact_sentences"):
        assert manifest[key] == single[key], key


def ray_workers() -> list[int]:
    """Pids of the processes Ray titled after our actor class."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"ray::DraftWorker" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_a_killed_ray_worker_has_its_windows_redone(one_process, tiny_model, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SLOW_ENGINE)
    run = tmp_path / "ray"
    proc = generate(tiny_model, run, "--ray", "--ray-workers", "2", wait=False,
                    env={"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])})
    killed, deadline = None, time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        manifest = run / "manifest.json"
        if manifest.exists() and json.loads(manifest.read_text())["windows_done"] and ray_workers():
            killed = ray_workers()[0]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.1)
    assert killed, "the run should still have been going when a window was done"
    _, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    done = json.loads((run / "manifest.json").read_text())["windows_done"]
    assert pairs(run) == pairs(one_process) and done == list(range(6))
    assert records(run, "rejects.jsonl") == records(one_process, "rejects.jsonl")
