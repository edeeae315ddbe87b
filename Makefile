# The README's two commands: `make train` (set up, train the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
# torch is installed first and on its own, so pip does not pick a multi-GB CUDA build when a
# CPU one is wanted. Override for your machine, e.g. `make setup TORCH="torch --index-url ..."`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
ARGS ?=
# One pytest worker per core (pytest-xdist): most tests wait on subprocesses or small fits.
PYTEST_ARGS ?= -n auto

.PHONY: setup train test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e ".[test,sweeps]"
	touch $@

setup: $(VENV)/.installed

train: setup
	$(BIN)/python train.py $(ARGS)

test: setup
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/python -m ruff check --fix .
	$(BIN)/python -m ruff format .
