# The commands a newcomer reads in the README. Each installs what it needs into .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run deps test fuzz check format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: start EventFlow (embedded: SQLite + in-database queue) on http://127.0.0.1:3000
run: $(STAMP)
	$(BIN)/eventflow up

## deps: check the system packages the tests need (as root: install the missing ones)
deps:
	@scripts/system-packages.sh

## test: the whole suite on real SQLite, PostgreSQL, Redis and Chromium, in TEST_WORKERS
##       processes (2; TEST_WORKERS=0 runs it in this one)
TEST_WORKERS ?= 2
# deps first, so a machine without the packages stops in seconds, before the venv is built.
# A test file runs whole in one process (--dist loadfile): its module fixtures start once.
# Files go out in the order tests/conftest.py sorts them, longest first (not by test count).
test: deps
	$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

## fuzz: the long schema fuzzing run (5,000+ cases a deployment, a fresh seed; see docs/testing.md)
fuzz: deps
	$(MAKE) --no-print-directory $(STAMP)
	EVENTFLOW_FUZZ_MAX_EXAMPLES=$${EVENTFLOW_FUZZ_MAX_EXAMPLES:-400} \
	EVENTFLOW_FUZZ_MIN_CASES=$${EVENTFLOW_FUZZ_MIN_CASES:-5000} \
	EVENTFLOW_FUZZ_SEED=$${EVENTFLOW_FUZZ_SEED:-random} \
	EVENTFLOW_FUZZ_TIMEOUT_S=$${EVENTFLOW_FUZZ_TIMEOUT_S:-3600} \
	$(BIN)/pytest tests/integration/test_schema_fuzz.py -p no:cacheprovider --timeout 7200 -v

# What ruff formats and lints (mypy's list is in pyproject.toml).
CODE := src tests testkit bench

## check: formatting, lint and strict types over src, tests, testkit and bench
check: $(STAMP)
	$(BIN)/ruff format --check $(CODE)
	$(BIN)/ruff check $(CODE)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format $(CODE)
	$(BIN)/ruff check --fix $(CODE)

## bench: the benchmark in bench/ (see docs/performance.md); options in ARGS, e.g.
##        make bench ARGS="--mode embedded --scenarios ingest-single --duration 2"
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .eventflow .pytest_cache .mypy_cache .ruff_cache
