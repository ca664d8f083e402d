# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TXMON := $(VENV)/bin/txmon
PYTEST_ARGS ?=
PYTEST := $(PY) -m pytest -p no:cacheprovider -ra --durations=15 $(PYTEST_ARGS)

.PHONY: venv system-deps kafka-fetch kafka-up kafka-down test test-quick test-faults demo down \
	bench docs lint fmt clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "make: $(PYTHON) must be Python 3.11+ (set PYTHON=...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

# JDK 17+, Maven, Prometheus and Alertmanager from Debian when missing (needs root;
# otherwise it says what is missing).
system-deps:
	@bash scripts/system-deps.sh

# Kafka's jars into $${TXMON_CACHE_DIR:-~/.cache/txmon}; a no-op (no mvn) once cached.
kafka-fetch: venv system-deps
	$(TXMON) kafka fetch

kafka-up: kafka-fetch
	$(TXMON) kafka up

kafka-down:
	$(TXMON) kafka down

lint: venv
	$(VENV)/bin/ruff check .

fmt: venv
	$(VENV)/bin/ruff check --fix .

# What CI runs: ruff, every test, the fault tests included (one session, one broker).
# The fault tests record their figures; docs/reliability.md's table is rendered from
# them. pytest exits 5 when it collects nothing, which fails the target like any error.
test: system-deps venv kafka-fetch
	$(VENV)/bin/ruff check .
	rm -f build/reliability.jsonl
	$(PYTEST)
	$(PY) tests/reliability_report.py

# While working: everything but the fault tests (about two thirds of the time).
test-quick: system-deps venv kafka-fetch
	$(VENV)/bin/ruff check .
	$(PYTEST) -m "not faults"

# Only the fault tests, and their table.
test-faults: system-deps venv kafka-fetch
	rm -f build/reliability.jsonl
	$(PYTEST) -m faults
	$(PY) tests/reliability_report.py

# Everything in real time with an injected incident; ends by itself, services keep
# running. DEMO_FOREVER=1 keeps streaming; other DEMO_* variables: `txmon demo --help`.
demo: system-deps venv kafka-fetch
	$(TXMON) demo up

# Stops whatever the demo started (its broker included); safe to run twice.
down:
	@if [ -x $(TXMON) ]; then $(TXMON) demo down; else echo "nothing to stop: no $(VENV)"; fi

bench: venv kafka-fetch
	$(PY) bench/run_all.py

# docs/detection.md's results and figures, the README's picture and the executed notebooks,
# from the current code (a few minutes; needs ../shared or TXMON_DATA_DIR).
docs: venv
	$(PY) scripts/docs.py

clean:
	rm -rf $(VENV) build *.egg-info
