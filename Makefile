# What CI and the README call. `make test` works from a fresh clone: it creates .venv,
# installs the project with all its extras and the dev tools, at the versions pinned in
# constraints.txt, then runs lint, type checks and the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install lint format typecheck test test-fast run bench soak clean constraints compose-check openapi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy

# On both cores (pytest-xdist): most tests wait on real processes, so two at a time
# halve the wall time; each xdist worker starts its own Redis and sandbox.
test: lint typecheck
	$(BIN)/pytest -n 2

# The decisions alone, in well under a minute: unit tests and Gameball's contract, no
# processes, no lint (make test runs everything). Every test module is collected first,
# so that an import a move broke shows here, not only in the full run.
test-fast: install
	$(BIN)/pytest -q --collect-only > /dev/null
	$(BIN)/pytest -n 2 -q tests/unit

# The whole system on embedded defaults, through an outage and a crash (Ctrl-C stops it).
# It ends by printing commands that look at the demo's own state (GBQ_HOME=.gbq/demo).
run: install
	-$(BIN)/gbq demo
	@echo
	@echo "The CLI is $(BIN)/gbq (or: . $(BIN)/activate, then gbq): $(BIN)/gbq --help"

# Pin what a green .venv has (run after `make test` passes with newer versions).
constraints: install
	{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^gameball-queue'; } > constraints.new
	mv constraints.new constraints.txt

# Re-derive tests/openapi/gameball-v4.json from a copy of gameballers/gameball-docs:
# make openapi DOCS=../gameball-docs COMMIT=409b529 (then read the diff).
openapi: install
	$(BIN)/python -m tests.openapi.derive "$(DOCS)" --commit "$(or $(COMMIT),409b529)"

# docker-compose.yml as Docker reads it (skipped, saying so, where there is no Docker).
compose-check:
	@if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then \
		docker compose -f docker-compose.yml config --quiet && echo "docker-compose.yml: valid"; \
		docker compose -f docker-compose.yml --profile sandbox config --quiet; \
	else echo "compose-check: skipped (no docker compose here)"; fi

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
