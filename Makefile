# What CI and the README call. `make test` works from a fresh clone: it creates .venv,
# installs the project with its dev extras, then runs lint, type checks and the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install lint format typecheck test run bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

# The whole system on embedded defaults, through an outage and a crash (Ctrl-C stops it).
run: install
	$(BIN)/gbq demo

# Benchmarks (not part of `make test`): each starts its own services on loopback and writes
# bench/results/<name>.md and .json. `make bench BENCH=publish` runs one; BENCH_ARGS=--quick
# runs small sizes.
BENCH      ?=
BENCH_ARGS ?=
bench: install
	$(BIN)/python -m bench $(BENCH) $(BENCH_ARGS)

# The long soak (not part of `make test`, which runs a 2,000-event version): randomized
# faults, then an exact check; writes bench/results/soak-<seed>-<events>.md.
SEED   ?= 1
EVENTS ?= 100000
soak: install
	$(BIN)/python -m tests.chaos --seed $(SEED) --events $(EVENTS) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
