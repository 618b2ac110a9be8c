# bika: two commands on a fresh machine (Python 3.11+, make, git):
#   make demo   throwaway PostgreSQL + sample data → backup → verify → restore → drill → list
#   make test   the whole test suite against real servers (installs what it needs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint typecheck check smoke lock system-deps clean

# the versions in requirements.lock, so a dependency release cannot change what CI tests
$(BIN)/bika: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint requirements.lock -e '.[dev]'
	touch $(BIN)/bika

demo: $(BIN)/bika
	$(BIN)/bika demo

system-deps:
	.ci/install-system-deps.sh

# on pytest-xdist workers: the tests mostly wait on servers and subprocesses, so four beat two
# on a 2-core machine; each worker starts its own servers, and a test file stays on one worker
# (its module fixtures, its order). WORKERS=0 runs the suite serially.
WORKERS ?= 4

test: $(BIN)/bika system-deps
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile

# the tests that need no server, for the edit-test loop (make test runs everything): about two
# minutes on the workers, four serially
test-fast: $(BIN)/bika
	$(BIN)/python -m pytest -q -m "not server" -n $(WORKERS) --dist loadfile

lint: $(BIN)/bika
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/deptry src
	$(BIN)/lint-imports

# the wheel in a clean venv without dev extras: what `pip install bika` gives a user
smoke:
	.ci/smoke-wheel.sh

# pin every dependency (and the dev tools) again after pyproject.toml changed
lock: $(BIN)/bika
	# uv prefers the versions already in the file: only what changed in pyproject.toml moves
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --no-header -q \
	  -o requirements.lock

typecheck: $(BIN)/bika
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
