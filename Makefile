# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TXMON := $(VENV)/bin/txmon
PYTEST_ARGS ?=
# Parallel test workers (pytest-xdist), each with its own session broker: most tests wait
# on a broker, a worker or a clock rather than compute, so 4 fit 2 cores. TEST_WORKERS=0
# runs in this process, one test at a time.
TEST_WORKERS ?= 4
PYTEST := $(PY) -m pytest -p no:cacheprovider -ra --durations=15 $(PYTEST_ARGS)
PYTEST_PARALLEL := $(PYTEST) -n $(TEST_WORKERS) --dist load --maxschedchunk 1

.PHONY: venv system-deps kafka-fetch kafka-up kafka-down test test-unit test-quick test-faults \
	demo down \
	bench docs lint fmt clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "make: $(PYTHON) must be Python 3.11+ (set PYTHON=...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@# uv resolves and installs in parallel: ~20 s where pip took 1 to 4 minutes of the
	@# suite's 15 on a loaded 2-core box.
	$(VENV)/bin/pip install --quiet 'uv>=0.13,<0.14'
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[dev]'
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

fmt: venv
	$(VENV)/bin/ruff check --fix .

# The layers import one way (pyproject.toml's [tool.importlinter]).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

# What CI runs: ruff, the import layers, every test (unit, integration and faults) on
# TEST_WORKERS parallel workers, a broker each.
# The fault tests record their figures; docs/reliability.md's table is rendered from
# them. pytest exits 5 when it collects nothing, which fails the target like any error.
test: system-deps venv kafka-fetch lint
	rm -f build/reliability.jsonl
	$(PYTEST_PARALLEL)
	$(PY) tests/support/reliability.py

# The fast loop: pure logic, no broker, no services (under a minute).
test-unit: venv
	$(PYTEST) tests/unit

# While working: everything but the fault tests (about two thirds of the time).
test-quick: system-deps venv kafka-fetch lint
	$(PYTEST_PARALLEL) tests/unit tests/integration

# Only the fault tests, and their table.
test-faults: system-deps venv kafka-fetch
	rm -f build/reliability.jsonl
	$(PYTEST_PARALLEL) tests/faults
	$(PY) tests/support/reliability.py

# Everything in real time with an injected incident; ends by itself, services keep
# running. DEMO_FOREVER=1 keeps streaming; other DEMO_* variables: `txmon demo --help`.
demo: system-deps venv kafka-fetch
	$(TXMON) demo up

# Stops whatever the demo started (its broker included); safe to run twice.
down:
	@if [ -x $(TXMON) ]; then $(TXMON) demo down; else echo "nothing to stop: no $(VENV)"; fi

# Every benchmark in one run: the committed table bench/results (refused at a load average
# above 1.5 unless BENCH_ARGS=--force; BENCH_ARGS="--only memory" writes build/bench-partial).
BENCH_ARGS ?=
bench: venv kafka-fetch
	@BENCH_DEPS=1 bash scripts/system-deps.sh
	$(PY) bench/run_all.py $(BENCH_ARGS)

# docs/detection.md's results and figures, the README's picture and the executed notebooks,
# from the current code (a few minutes; needs ../shared or TXMON_DATA_DIR).
docs: venv
	$(PY) scripts/docs.py

clean:
	rm -rf $(VENV) build *.egg-info
