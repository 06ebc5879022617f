import subprocess
import sys

import pytest

from selfinstruct import __version__
from selfinstruct.cli import main, make_config
from selfinstruct.config import GenerateConfig, TuneConfig

from .conftest import REPO


def run_cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "selfinstruct", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_the_stages():
    result = run_cli("--help")
    assert result.returncode == 0
    for stage in ("generate", "tune", "probe"):
        assert stage in result.stdout


def test_help_imports_no_heavy_library():
    code = "import sys, selfinstruct.cli; print(sorted(m for m in ('torch','transformers','vllm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO).stdout
    assert out.strip() == "[]"


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_flags_fill_the_dataclass():
    stage, config = make_config(["generate", "c.txt", "--phrasings", "2", "--no-roundtrip", "--max-windows", "3"])
    assert stage == "generate"
    assert isinstance(config, GenerateConfig)
    assert (config.corpus, config.phrasings, config.roundtrip, config.max_windows) == ("c.txt", 2, False, 3)


def test_yaml_fills_the_same_dataclass_and_flags_win(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("tune:\n  lora_r: 8\n  epochs: 2\n  neftune-alpha: none\nprobe:\n  n_absent: 5\n")
    _, config = make_config(["tune", "--config", str(cfg), "--epochs", "3"])
    assert isinstance(config, TuneConfig)
    assert (config.lora_r, config.epochs, config.neftune_alpha) == (8, 3.0, None)


@pytest.mark.parametrize("yaml_text, message", [
    ("corpus: c.txt\nno_such_option: 1\n", "unknown option"),
    ("corpus: [unclosed\n", "not valid YAML"),
    ("- a list\n", "mapping"),
    ("corpus: c.txt\nphrasings: [1]\n", "cannot read [1] as int"),
    ("corpus: c.txt\nbatch_size: 2.5\n", "cannot read 2.5 as int"),
])
def test_bad_yaml_is_one_line_and_exit_2(tmp_path, capsys, yaml_text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    assert main(["generate", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["generate", "c.txt", "--backend", "tpu"], "--backend must be one of"),
    (["generate", "c.txt", "--unanswerable-ratio", "1.5"], "between 0 and 1"),
    (["generate", "c.txt", "--source-tag", "my tag"], "Source:"),
    (["generate"], "needs a corpus"),
    (["generate", "c.txt", "--top-p", "0"], "--top-p in (0, 1]"),
    (["probe", "--batch-size", "0"], "--batch-size and --max-new-tokens must be >= 1"),
])
def test_invalid_options_are_refused(capsys, args, message):
    assert main(args) == 2
    assert message in capsys.readouterr().err
