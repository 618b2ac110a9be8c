# bika: two commands on a fresh machine (Python 3.11+, make, git):
#   make demo   throwaway PostgreSQL + sample data → backup → verify → restore → drill → list
#   make test   the whole test suite against real servers (installs what it needs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck check system-deps clean

$(BIN)/bika: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/bika

demo: $(BIN)/bika
	$(BIN)/bika demo

system-deps:
	.ci/install-system-deps.sh

test: $(BIN)/bika system-deps
	$(BIN)/python -m pytest -q

lint: $(BIN)/bika
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(BIN)/bika
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
