# The README's two commands: `make train` (set up, train the embedded default) and `make test`.
# `make help` lists every target.
PYTHON ?= python3
VENV ?= .venv
# torch is installed first and on its own, so pip does not pick a multi-GB CUDA build when a
# CPU one is wanted. Override for your machine, e.g. `make setup TORCH="torch --index-url ..."`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
ARGS ?=
# One pytest worker per core (pytest-xdist): most tests wait on subprocesses or small fits.
PYTEST_ARGS ?= -n auto

.PHONY: help setup train test lint clean docs

help:  ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-7s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e ".[test,sweeps,mlflow,docs]"
	touch $@

setup: $(VENV)/.installed  ## Create .venv and install nnlab with its test, sweeps, mlflow and docs extras

train: setup  ## Train (the default config; pass overrides as ARGS="model=mlp ...")
	$(BIN)/python train.py $(ARGS)

test: setup  ## Lint, check the layer map, run the test suite
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

docs: setup  ## Build the course site into build/site, strictly (docs/site.md)
	$(BIN)/python -m mkdocs build --strict

lint: setup  ## Fix lint and formatting in place
	$(BIN)/python -m ruff check --fix .
	$(BIN)/python -m ruff format .

clean:  ## Remove build outputs and caches (keeps .venv, logs/ and data/)
	rm -rf build dist .pytest_cache .ruff_cache .coverage htmlcov src/*.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} +
