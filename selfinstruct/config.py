"""One dataclass per stage. The CLI flags and `--config FILE.yaml` both fill these, so every option is
documented once (the `help` metadata) and validated once (`__post_init__`). Over 300 lines because it holds
every option of every stage with its help text, and the stages share validation helpers and defaults."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m-instruct"
BACKENDS = ("auto", "vllm", "transformers")
QUANTIZATIONS = ("nf4", "none")
HOLD_OUTS = ("window", "phrasing")
ORDERS = ("mixed", "qa-first")
SELECTIONS = ("k-center", "random")
LANGUAGES = ("auto", "en", "zh")
EXPORT_FORMATS = ("jsonl", "parquet", "sharegpt", "alpaca")
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class UserError(Exception):
    """A problem the user can fix (bad input, missing file, unknown model): the CLI prints one line, exits 2."""


def opt(default, help: str, **extra):
    """A config field with its one-line help text."""
    return field(default=default, metadata={"help": help, **extra})


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"--{name.replace('_', '-')} must be one of {', '.join(choices)} (got {value!r})")


def _check_share(name: str, value: float) -> None:
    _check(0.0 <= value <= 1.0, f"--{name.replace('_', '-')} must be between 0 and 1 (got {value})")


@dataclass
class GenerateConfig:
    corpus: str = opt("", "the corpus: a UTF-8 (or GB18030) text file", positional=True)
    out: str | None = opt(None, "run folder (default: outputs/<corpus stem>/)")
    model: str = opt(DEFAULT_MODEL, "question-writing model: the embedded default, a local HF folder or a .gguf file")
    backend: str = opt("auto", "generation engine: auto (vllm where it works), vllm or transformers")
    quantization: str = opt("nf4", "weights for the transformers engine: nf4 (4-bit, double quant) or none")
    batch_size: int = opt(32, "prompts per forward pass on the transformers engine")
    seed: int = opt(0, "random seed for sampling, fact choice and invented names")
    language: str = opt("auto", "corpus language for prompts and splitting: auto, en or zh")
    source_tag: str | None = opt(None, "source marker, e.g. Source:8989REF (default: derived from the corpus hash)")
    window_tokens: int = opt(400, "sliding-window size in tokens of the model's tokenizer")
    window_overlap: int = opt(50, "tokens shared by consecutive windows")
    questions_per_window: int = opt(0, "facts asked about per window; 0 asks about every name, number, date "
                                    "and definition of every sentence that holds one")
    phrasings: int = opt(7, "question phrasings kept per fact, of different shapes (a fact only sticks when asked "
                         "several ways): the model's, the sentence's own clause, cloze and template, and the "
                         "trimmed and reworded ones made from those; each beyond 4 has the model write from "
                         "another started question (who / which person / who was the person who), 3 at most. "
                         "On make eval, seeds 0 and 1, 7 against 5: hand-written 0.50 and 0.58 against 0.57 "
                         "and 0.53 (that seed 1 before offices were typed as things), own new phrasings 0.68 "
                         "and 0.61 against 0.56 and 0.65; within noise; README)")
    candidates: int = opt(5, "model samples per started question, the first greedy and the rest sampled; each the "
                          "filters pass is kept, up to --phrasings a fact (make eval, seed 0, 5 against 3: 353 "
                          "model-written training questions against 235, own new phrasings 0.84 against 0.72, "
                          "held-out 0.92 against 0.68, hand-written 0.57 / 0.43 gated against 0.55 / 0.42, gated "
                          "wrong on the hand-written 0.17 against 0.11; 3 against 1: 297 "
                          "model-written training questions against 145, own new phrasings 0.82 against 0.63, "
                          "hand-written 0.67 / 0.62 gated against 0.65 / 0.52, but raw absent refused 0.45 against "
                          "0.55; seed 1 at 3: new phrasings 0.79, hand-written 0.58 / 0.45; README)")
    rewrites: int = opt(8, "restatements of each window (its sentences regrouped around each entity) written to "
                        "texts.jsonl for tune's text mix (4 against 1 on make eval's corpus: hand-written key "
                        "accuracy 0.23 vs 0.12 in bf16; 8 against 4, paired over 3 seeds: the gate refused 0.20 vs "
                        "0.27 of the hand-written answers the model knew, knowledge the same; README)")
    unanswerable_ratio: float = opt(0.4, "refusal pairs about absent entities per accepted answerable pair "
                                    "(measured against 0.2: the demo's raw tuned model refused 0.66 of absent "
                                    "probes against 0.30, its gated one was wrong 0.20 against 0.26; on make "
                                    "eval, half of them: hand-written key accuracy 0.37 vs 0.38 (gated 0.27 vs 0.35), "
                                    "raw absent refused 0.45 vs 0.65, its over-refusal no lower)")
    min_support: float = opt(0.6, "least share of an answer's content words found in its window")
    dedup_threshold: float = opt(0.7, "questions at least this similar (word 3-gram Jaccard) to a kept one are dropped")
    roundtrip: bool = opt(True, "keep a pair only if the model answers its own question with the same answer")
    answer_form: str = opt("key-first", "training answers: key-first (\"Emeric Saldane. The first Warden of "
                           "the Isle was Emeric Saldane.\") or clause (the clause that states the key, alone)")
    roundtrip_context: str = opt("sentence", "what the round trip reads: the fact's sentence, or its whole window "
                                 "(a small model misreads long text)")
    temperature: float = opt(0.8, "sampling temperature of the extra candidates (the first is greedy)")
    top_p: float = opt(0.95, "nucleus sampling threshold")
    max_new_tokens: int = opt(48, "longest question or answer the model may write, in tokens")
    windows_per_step: int = opt(8, "windows sent to the engine together; also the resume granularity")
    max_windows: int | None = opt(None, "stop after this many windows (quick tries)")
    overwrite: bool = opt(False, "replace an existing run folder made from another corpus or other options")
    ray: str | None = opt(None, "draft windows on Ray workers: --ray alone starts a local Ray instance, --ray auto "
                          "joins the running cluster, --ray HOST:PORT (or ray://...) a given one (pip install "
                          "'selfinstruct[ray]')", const="local")
    ray_workers: int = opt(2, "Ray workers, each holding one engine")
    ray_cpus: float = opt(1.0, "CPUs per Ray worker (its torch threads)")
    ray_gpus: float = opt(0.0, "GPUs per Ray worker (1 for vLLM on a GPU cluster)")

    def __post_init__(self):
        _check(bool(self.corpus), "generate needs a corpus file: selfinstruct generate CORPUS.txt")
        _check(self.ray_workers >= 1 and self.ray_cpus > 0 and self.ray_gpus >= 0,
               "--ray-workers must be at least 1, --ray-cpus above 0 and --ray-gpus 0 or more")
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("quantization", self.quantization, QUANTIZATIONS)
        _check_choice("language", self.language, LANGUAGES)
        _check_choice("roundtrip_context", self.roundtrip_context, ("sentence", "window"))
        _check_choice("answer_form", self.answer_form, ("key-first", "clause"))
        _check_share("unanswerable_ratio", self.unanswerable_ratio)
        _check_share("min_support", self.min_support)
        _check_share("dedup_threshold", self.dedup_threshold)
        _check(self.window_tokens >= 32, "--window-tokens must be at least 32")
        _check(0 <= self.window_overlap < self.window_tokens, "--window-overlap must be below --window-tokens")
        _check(self.rewrites >= 0, "--rewrites must be 0 or more")
        _check(self.questions_per_window >= 0, "--questions-per-window must be 0 (every fact) or more")
        for name in ("phrasings", "candidates", "batch_size", "windows_per_step",
                     "max_new_tokens"):
            _check(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be at least 1")
        _check(self.temperature >= 0 and 0 < self.top_p <= 1, "--temperature must be >= 0 and --top-p in (0, 1]")
        _check(self.max_windows is None or self.max_windows >= 1, "--max-windows must be at least 1")
        if self.source_tag is not None:
            _check(self.source_tag.startswith("Source:") and " " not in self.source_tag,
                   "--source-tag must look like Source:8989REF (no spaces)")

    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("outputs") / Path(self.corpus).stem


@dataclass
class TuneConfig:
    run: str | None = opt(None, "run folder to train on (default: the most recent under outputs/)")
    model: str | None = opt(None, "base model (default: the one the run was generated with)")
    quantization: str = opt("nf4", "frozen base weights: nf4 (QLoRA) or none (plain LoRA)")
    lora_r: int = opt(64, "LoRA rank (on make eval's corpus, two seeds each, 64 answered 0.47 of the hand-written "
                      "questions against 0.40 at 16, but 0.43 of the run's own new phrasings against 0.61)")
    lora_alpha: int = opt(128, "LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = opt(0.05, "dropout on the LoRA input")
    epochs: float = opt(5.0, "passes over the training data, rounded to whole ones with --vary-questions or "
                        "--order qa-first (measured on make eval's corpus: 2 at the old 5e-4 taught "
                        "the answer format but no fact; at 2e-3 held-out phrasings were learned best after 5)")
    learning_rate: float | None = opt(None, "peak learning rate (default: 2e-3 below 1B parameters, where 5e-4 "
                                      "never taught a fact, measured; 2e-4 above, as in QLoRA)")
    batch_size: int = opt(8, "sequences per optimizer step")
    micro_batch_size: int | None = opt(None, "sequences per forward pass, the rest by gradient accumulation "
                                       "(default: 4 on a CPU, the whole batch on CUDA; 2 trades speed for memory)")
    max_length: int = opt(256, "longest training sequence in tokens; longer ones are cut")
    neftune_alpha: float | None = opt(None, "NEFTune embedding-noise alpha, e.g. 5 (default off: it helps a chat "
                                      "style, but blurs the exact names and numbers closed-book QA has to recall)")
    eval_share: float = opt(0.15, "share of pairs held out for eval loss")
    select: int = opt(0, "train on N pairs chosen by k-center greedy on question embeddings, every fact before "
                      "a second phrasing (0: all pairs)")
    select_by: str = opt("k-center", "how --select picks: k-center (spread over question embeddings, every fact "
                         "first) or random (a uniform sample of the same size, the baseline it is measured against)")
    hold_out: str = opt("phrasing", "what eval holds out: one phrasing of some facts (every fact still trained; "
                        "eval asks if it survives rephrasing) or whole windows (their facts never trained)")
    early_stop_patience: int = opt(3, "evaluations without a better eval loss before stopping")
    seed: int = opt(0, "seed for the split, LoRA init and shuffling")
    texts: bool = opt(True, "also train on the corpus windows and their restatements (texts.jsonl), loss on every "
                      "token, mixed with the QA pairs")
    order: str = opt("mixed", "mixed: QA pairs and texts shuffled together every epoch; qa-first: the QA pairs "
                     "alone for the first half of the epochs, then the mix (PIT, Jiang et al. 2024). On make eval "
                     "qa-first knew more (hand-written key accuracy 0.22 vs 0.12) and answered wrong more (gated "
                     "0.26 vs 0.13)")
    vary_questions: float = opt(1.0, "share of the QA pairs asked in a wording drawn anew each epoch "
                                "(light words left out, synonyms swapped; 0: always as written). On make eval, "
                                "0, 0.5 and 1: hand-written key accuracy 0.23, 0.35, 0.38 (gated 0.13, 0.28, "
                                "0.35), gated wrong 0.15, 0.12, 0.14")
    gate: bool = opt(True, "calibrate a confidence gate at the end (adapter/gate.json)")
    gate_target: float = opt(0.1, "share of held-out questions the tuned model gets right that the gate may refuse")
    gate_names: bool = opt(True, "the gate also refuses a question naming something the corpus never mentions "
                           "(English; the corpus's names go into gate.json)")
    strict: bool = opt(False, "refuse a qa.jsonl with malformed lines instead of skipping them")
    merge: bool = opt(False, "write merged/: the adapter folded into the base it trained on (no LoRA needed)")

    def __post_init__(self):
        _check_choice("quantization", self.quantization, QUANTIZATIONS)
        _check(self.lora_r >= 1 and self.lora_alpha >= 1, "--lora-r and --lora-alpha must be at least 1")
        _check(0.0 <= self.lora_dropout < 1.0, "--lora-dropout must be in [0, 1)")
        _check(self.epochs > 0 and (self.learning_rate is None or self.learning_rate > 0),
               "--epochs and --learning-rate must be positive")
        _check(self.batch_size >= 1 and self.max_length >= 16, "--batch-size >= 1 and --max-length >= 16")
        _check(self.select >= 0, "--select must be 0 (all pairs) or a positive count")
        _check(self.micro_batch_size is None or (self.micro_batch_size >= 1
                                                  and self.batch_size % self.micro_batch_size == 0),
               "--micro-batch-size must divide --batch-size")
        _check(0.0 <= self.eval_share < 1.0, "--eval-share must be in [0, 1)")
        _check_choice("hold_out", self.hold_out, HOLD_OUTS)
        _check_choice("order", self.order, ORDERS)
        _check_choice("select_by", self.select_by, SELECTIONS)
        _check_share("gate_target", self.gate_target)
        _check_share("vary_questions", self.vary_questions)


@dataclass
class ProbeConfig:
    run: str | None = opt(None, "run folder (default: the most recent under outputs/)")
    adapter: str | None = opt(None, "adapter folder (default: RUN/adapter)")
    backend: str = opt("transformers", "engine: transformers (peft adapter), vllm (LoRA request) or auto")
    quantization: str = opt("nf4", "base weights on the transformers engine: nf4 or none")
    n_absent: int = opt(50, "probes about entities absent from the corpus")
    n_answerable: int = opt(50, "probes answerable from the corpus (half verbatim, half paraphrased)")
    n_held_out: int = opt(50, "phrasings tune held out of facts it trained, unlike every trained question, asked "
                          "too (a larger and fairer check of rephrasing than the model-written new phrasings)")
    questions: str | None = opt(None, "your own probe set: JSONL with question, answerable and optional answer")
    base: bool = opt(True, "also probe the base model with the same prompts")
    judge: bool = opt(False, "also ask the generator model to judge each answer (reported separately)")
    gate: bool = opt(True, "apply the confidence gate tune calibrated (ADAPTER/gate.json); --no-gate shows only "
                     "the raw tuned model")
    max_new_tokens: int = opt(64, "longest answer, in tokens (greedy decoding)")
    batch_size: int = opt(16, "prompts per forward pass")
    seed: int = opt(0, "seed for choosing probes and inventing names")
    fail_above: float | None = opt(None, "exit 1 when the tuned hallucination rate is above this (a CI gate)")

    def __post_init__(self):
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("quantization", self.quantization, QUANTIZATIONS)
        _check(min(self.n_absent, self.n_answerable, self.n_held_out) >= 0,
               "--n-absent, --n-answerable and --n-held-out must be >= 0")
        _check(self.batch_size >= 1 and self.max_new_tokens >= 1, "--batch-size and --max-new-tokens must be >= 1")
        if self.fail_above is not None:
            _check_share("fail_above", self.fail_above)


@dataclass
class AskConfig:
    question: str = opt("", "the question (or --file, or one question a line on stdin)", positional=True)
    file: str | None = opt(None, "questions to answer: JSONL objects with a question, or plain text, one a line")
    run: str | None = opt(None, "run folder (default: the most recent under outputs/)")
    adapter: str | None = opt(None, "adapter folder (default: RUN/adapter)")
    backend: str = opt("transformers", "engine: transformers (reads the logits the gate needs), vllm or auto")
    quantization: str = opt("nf4", "base weights on the transformers engine: nf4 or none")
    gate: bool = opt(True, "apply the confidence gate tune calibrated (ADAPTER/gate.json)")
    json: bool = opt(False, "one JSON object a question: answer, refused, confidence, the gate's threshold")
    max_new_tokens: int = opt(64, "longest answer, in tokens (greedy decoding)")
    batch_size: int = opt(16, "prompts per forward pass")

    def __post_init__(self):
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("quantization", self.quantization, QUANTIZATIONS)
        _check(not (self.question and self.file), "give a question or --file, not both")
        _check(self.batch_size >= 1 and self.max_new_tokens >= 1, "--batch-size and --max-new-tokens must be >= 1")


@dataclass
class ServeConfig:
    run: str | None = opt(None, "run folder (default: the most recent under outputs/)")
    adapter: str | None = opt(None, "adapter folder (default: RUN/adapter)")
    host: str = opt("127.0.0.1", "address to listen on")
    port: int = opt(8000, "port to listen on (0: any free port, printed)")
    api_key: str | None = opt(None, "bearer token clients must send (default: $SELFINSTRUCT_API_KEY; none: open)")
    backend: str = opt("transformers", "engine: transformers (reads the logits the gate needs), vllm or auto")
    quantization: str = opt("nf4", "base weights on the transformers engine: nf4 or none")
    gate: bool = opt(True, "apply the confidence gate tune calibrated (ADAPTER/gate.json)")
    max_new_tokens: int = opt(128, "longest answer a request may ask for, in tokens")
    max_question_tokens: int = opt(512, "longest question accepted, in tokens (longer: a 400 error)")
    batch_size: int = opt(8, "concurrent requests answered in one forward pass")

    def __post_init__(self):
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("quantization", self.quantization, QUANTIZATIONS)
        _check(0 <= self.port <= 65535, "--port must be in 0..65535")
        _check(min(self.max_new_tokens, self.max_question_tokens, self.batch_size) >= 1,
               "--max-new-tokens, --max-question-tokens and --batch-size must be >= 1")


@dataclass
class ExportConfig:
    run: str | None = opt(None, "run folder (default: the most recent under outputs/)")
    format: str = opt("jsonl", "jsonl or parquet (messages), sharegpt (conversations) or alpaca (instruction/output)")
    out: str | None = opt(None, "file to write (default: RUN/export/FORMAT.jsonl, or .parquet)")

    def __post_init__(self):
        _check_choice("format", self.format, EXPORT_FORMATS)


@dataclass
class ReviewConfig:
    run: str | None = opt(None, "run folder (default: the most recent under outputs/)")
    host: str = opt("127.0.0.1", "address to listen on")
    port: int = opt(0, "port to listen on (0: a free one, printed with the URL)")

    def __post_init__(self):
        _check(0 <= self.port <= 65535, "--port must be in 0..65535")


STAGES = {"generate": GenerateConfig, "review": ReviewConfig, "tune": TuneConfig, "probe": ProbeConfig,
          "ask": AskConfig, "serve": ServeConfig, "export": ExportConfig}


def value_parser(hint):
    """Text -> value for an annotation such as `int`, `float | None` or `str | None` ("none" means None)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    base = args[0] if optional else hint

    def parse(text: str):
        if optional and text.strip().lower() in ("none", "null", ""):
            return None
        if base is bool:
            word = text.strip().lower()
            if word not in TRUE_WORDS + FALSE_WORDS:
                raise ValueError(text)  # "nope" is not false: a typo must not turn an option off
            return word in TRUE_WORDS
        return base(text)

    return parse


def typed_value(hint, value):
    """A YAML value (already typed) checked against the annotation; ints pass for floats, bools for nothing
    else. Text goes through `value_parser`, as from the command line."""
    if isinstance(value, str):
        return value_parser(hint)(value)
    allowed = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if value is None and len(allowed) < len(typing.get_args(hint)):
        return None
    for kind in allowed:
        if isinstance(value, bool) != (kind is bool):
            continue
        if kind is float and isinstance(value, (int, float)):
            return float(value)
        if kind in (int, bool) and isinstance(value, kind):
            return value
    raise ValueError(value)


def build(cls, values: dict):
    """Make a stage config from a dict (YAML or flags): unknown keys and unreadable values are named."""
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    _check(not unknown, f"unknown option(s) for {cls.__name__}: {', '.join(unknown)}")
    parsed = {}
    for name, value in values.items():
        try:
            parsed[name] = typed_value(hints[name], value)
        except ValueError:
            readable = str(hints[name]).replace("<class '", "").replace("'>", "")
            raise UserError(f"option {name}: cannot read {value!r} as {readable}") from None
    return cls(**parsed)
