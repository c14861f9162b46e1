# The two commands of the README: `make demo` and `make test`. Both run `make setup` first,
# which installs what is missing (system packages, the virtualenv, Kafka's jars, the browser
# test's playwright-core) and is fast when nothing is.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ARGS ?=
# pip: progress, not noise (no version nag; the build backend's warnings are for maintainers).
PIP := PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS=ignore $(BIN)/pip

.PHONY: setup system-packages demo test test-unit test-integration lint format bench clean broker-start broker-stop

setup: system-packages $(STAMP) tests/browser/node_modules
	@$(BIN)/vmlb broker install --quiet

# The system packages (tools/system-packages.sh is their one list, .ci/run uses it too).
system-packages:
	@tools/system-packages.sh

# playwright-core for the web page's browser test (it drives Debian's chromium, downloads none).
tests/browser/node_modules: tests/browser/package-lock.json
	@echo "setup: playwright-core for the browser test (npm ci)"
	@npm ci --prefix tests/browser --no-audit --no-fund --silent && touch $@

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	@test -x $(BIN)/python || { echo "setup: creating $(VENV)/"; $(PYTHON) -m venv $(VENV); }
	@echo "setup: installing vmlb and its dependencies into $(VENV)/"
	@$(PIP) install -q --upgrade pip
	@$(PIP) install -q -e ".[test]"
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
