# audiocls: `make demo` and `make test` do all the set-up on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Pinned together: torch/torchvision from this machine's disk, torchaudio 2.11 from PyPI (works with both).
# On another machine: make install TORCH_PINS="torch torchvision torchaudio" (or your CUDA index).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0
EXTRAS ?= dev,export,lite,serve
MARKERS ?= not slow and not gpu
PYTEST_ARGS ?=

.PHONY: help install demo test test-all lint format clean results

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PINS) -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed ## create .venv and install audiocls with its dev extras (idempotent)

demo: $(VENV)/.installed ## train on the built-in synthetic set (CPU, a few minutes) and print the test accuracy
	$(VENV)/bin/audiocls fit --config configs/demo.yaml

results: $(VENV)/.installed ## regenerate the README results table and docs/RESULTS.md from runs/results (RUN="esc10_cv fsdd" reruns those first)
	$(PY) benchmarks/results.py $(if $(RUN),--run $(RUN))

test: $(VENV)/.installed ## the fast test suite (MARKERS="not gpu" adds the slow ones)
	$(PY) -m pytest -q -m "$(MARKERS)" $(PYTEST_ARGS)

test-all: ## every test that runs without a GPU, the slow training tests included
	$(MAKE) test MARKERS="not gpu"

lint: $(VENV)/.installed ## ruff check and format check
	$(VENV)/bin/ruff check audiocls tests $(wildcard benchmarks)
	$(VENV)/bin/ruff format --check audiocls tests $(wildcard benchmarks)

format: $(VENV)/.installed ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix audiocls tests $(wildcard benchmarks)
	$(VENV)/bin/ruff format audiocls tests $(wildcard benchmarks)

clean: ## remove runs and caches (not .venv)
	rm -rf runs lightning_logs .pytest_cache .ruff_cache wandb
