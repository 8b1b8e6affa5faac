# mmpo: `make help` lists the targets. Every target installs what it needs into .venv first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch that lies on this machine's disk. A GPU user installs the CUDA build of torch
# into .venv first (see README); `make install` then keeps it.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.DEFAULT_GOAL := help
.PHONY: help install train test test-full lint format clean bench demo \
        repro-mdpo-table2 repro-mdpo-table3 repro-mdpo-table4 repro-mdpo

help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,quant]"
	touch $@

install: $(VENV)/.installed ## Create .venv and install mmpo with the CPU torch build (GPU: see README)

train: install ## Run the main job: python train.py (DPO, tiny LLaVA, shapes world, CPU); ARGS="loss=mdpo ..."
	$(PY) train.py $(ARGS)

test: install ## Run the default test suite (< 15 min on 2 CPU cores)
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

test-full: install ## Run every test, the slow ones too
	$(PY) -m pytest -n 2 -m "" $(PYTEST_ARGS)

lint: install ## ruff check + format check
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

format: install ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix src tests scripts
	$(VENV)/bin/ruff format src tests scripts

clean: ## Remove run outputs, generated data, caches (keeps .venv)
	rm -rf outputs multirun data/shapes .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -not -path "./$(VENV)/*" -exec rm -rf {} +
