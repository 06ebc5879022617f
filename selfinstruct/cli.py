"""Argument parsing only: flags and YAML fill a stage's config dataclass, then the stage's run() does the work.
Heavy libraries are imported by the stages, never here, so `--help` answers at once."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import typing

from . import __version__
from .config import STAGES, UserError, build, value_parser

SUMMARIES = {
    "generate": "a 4-bit model reads sliding windows of the corpus and writes source-tagged QA pairs",
    "review": "a local page to accept, reject or edit each pair before tune (RUN/review.jsonl)",
    "tune": "QLoRA fine-tune (NF4, double quant, LoRA on all linear layers) on a run's pairs",
    "probe": "ask about entities absent from the corpus: refusal vs invention, and recall of what is in it",
    "ask": "the tuned model answers your questions closed-book, behind its confidence gate",
    "serve": "an OpenAI-compatible /v1/chat/completions server for the tuned model, gate applied",
    "export": "a run's pairs as jsonl, parquet, sharegpt or alpaca, and RUN/README.md, its dataset card",
}


def _add_stage(subparsers, name: str, cls) -> None:
    parser = subparsers.add_parser(name, help=SUMMARIES[name], description=SUMMARIES[name],
                                   argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", metavar="FILE.yaml", help="read options from YAML (flags given here win)")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        help_text = f.metadata["help"]
        if "(default" not in help_text:  # a help that explains its own default keeps that explanation
            help_text += f" (default: {f.default})"
        if f.metadata.get("positional"):
            parser.add_argument(f.name, nargs="?", help=f.metadata["help"])
        elif "const" in f.metadata:  # a flag that may stand alone or take a value
            parser.add_argument(f"--{f.name.replace('_', '-')}", nargs="?", const=f.metadata["const"], help=help_text,
                                metavar=f.name.upper())
        elif hints[f.name] is bool:
            parser.add_argument(f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=value_parser(hints[f.name]), help=help_text,
                                metavar=f.name.upper())


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfinstruct",
        description="Turn a domain corpus into a closed-book QA model, and measure how much it still makes up.")
    parser.add_argument("--version", action="version", version=f"selfinstruct {__version__}")
    subparsers = parser.add_subparsers(dest="stage", metavar="{" + ",".join(STAGES) + "}", required=True)
    for name, cls in STAGES.items():
        _add_stage(subparsers, name, cls)
    return parser


def _read_yaml(path: str, stage: str) -> dict:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except OSError as e:
        raise UserError(f"cannot read config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise UserError(f"config {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"config {path} must be a mapping of option: value")
    section = data.get(stage)  # one file may hold sections for several stages
    values = section if isinstance(section, dict) else {k: v for k, v in data.items() if k not in STAGES}
    return {k.replace("-", "_"): v for k, v in values.items()}


def make_config(argv: list[str] | None = None):
    args = vars(make_parser().parse_args(argv))
    stage = args.pop("stage")
    config_file = args.pop("config", None)
    values = _read_yaml(config_file, stage) if config_file else {}
    values.update(args)
    return stage, build(STAGES[stage], values)


def main(argv: list[str] | None = None) -> int:
    stage = None
    try:
        stage, config = make_config(argv)
        code = importlib.import_module(f"selfinstruct.{stage}").run(config)
    except UserError as e:
        print(f"selfinstruct: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resume = " (rerun the same command to resume)" if stage == "generate" else ""
        print(f"selfinstruct: interrupted; what was written is kept{resume}", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
