"""The whole mission on the embedded model, through the CLI as a user runs it: generate -> tune -> probe."""

import json
import subprocess
import sys

import pytest

from .conftest import REPO, SAMPLE_EN


def cli(*args, timeout=1500):
    result = subprocess.run([sys.executable, "-m", "selfinstruct", *args], capture_output=True, text=True, cwd=REPO,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_generate_tune_probe_on_the_sample_corpus(tmp_path):
    run = tmp_path / "velmoor"
    # Three facts a window, three phrasings each (5 by default) and one restatement each (4 by default) keep the
    # run small enough for CI: the text pieces are the longest rows tune trains on. Every fact is still asked in
    # three shapes, and the QA pairs are mixed with the windows and their restatements, as by default.
    cli("generate", str(SAMPLE_EN), "--out", str(run), "--max-windows", "3", "--questions-per-window", "3",
        "--phrasings", "3", "--rewrites", "1")
    cli("tune", "--run", str(run))
    probe = cli("probe", "--run", str(run), "--n-absent", "12", "--n-answerable", "12")
    report = json.loads((run / "probe" / "report.json").read_text())
    for model in ("base", "tuned"):
        assert report[model]["n_absent"] == 12 and report[model]["n_answerable"] >= 6
    # The tuned model must answer its training questions, and better than the base.
    assert report["tuned"]["empty_rate"] < 0.5, report
    # Measured 2026-11-25 with the current tune defaults (15 steps): verbatim F1 0.48 against the base's 0.06,
    # key accuracy 0.17 against 0.00 (2 of 12 answerable probes: too few to assert; README, make eval).
    assert report["tuned"]["verbatim_f1"] > report["base"]["verbatim_f1"], report
    assert "| key accuracy" in probe.stderr and "| wrong answers over all probes" in probe.stderr
    assert (run / "probe" / "report.png").stat().st_size > 10_000
    metrics = json.loads((run / "adapter" / "train_metrics.json").read_text())
    assert metrics["last_train_loss"] < metrics["first_train_loss"]
    assert metrics["text_mix"]["rewrites"] > 0 and metrics["text_mix"]["windows"] == 3
    if metrics["gate"]:  # calibrated when enough held-out phrasings were answered right; probe then applies it
        assert (run / "adapter" / "gate.json").is_file() and report["gated"]["n_absent"] == 12
        assert report["gate"]["signal"] == metrics["gate"]["signal"]
    else:
        assert report["gated"] is None and "no gate is applied" in probe.stderr
