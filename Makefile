# The two commands of the README: `make demo` and `make test`. Both run `make setup` first,
# which is idempotent and fast when nothing is missing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ARGS ?=

.PHONY: setup demo test test-unit test-integration lint format bench clean broker-start broker-stop

setup: $(STAMP) tests/browser/node_modules
	@$(BIN)/vmlb broker install >/dev/null

# playwright-core for the web page's browser test (it drives Debian's chromium, downloads none).
tests/browser/node_modules: tests/browser/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: the web page's browser test will skip (and fail under CI)"; exit 0; } \
		&& npm ci --prefix tests/browser --no-audit --no-fund && touch $@

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	@touch $(STAMP)

demo: setup
	$(BIN)/vmlb demo $(DEMO_ARGS)

test: setup lint
	$(BIN)/pytest -q

test-unit: setup
	$(BIN)/pytest -q tests/unit

test-integration: setup
	$(BIN)/pytest -q tests/integration

lint: setup
	$(BIN)/ruff check pipeline producers benchmarks tests
	$(BIN)/ruff format --check pipeline producers benchmarks tests

format: setup
	$(BIN)/ruff format pipeline producers benchmarks tests
	$(BIN)/ruff check --fix pipeline producers benchmarks tests

bench: setup
	$(BIN)/vmlb bench sim --scenario mixed-io

broker-start: setup
	$(BIN)/vmlb broker start

broker-stop: setup
	$(BIN)/vmlb broker stop

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
