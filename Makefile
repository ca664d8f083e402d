# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TXMON := $(VENV)/bin/txmon

.PHONY: venv system-deps kafka-fetch test test-faults demo down bench lint fmt clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

# Prometheus and Alertmanager from Debian, when missing (root only; skipped otherwise).
system-deps:
	@bash scripts/system-deps.sh

kafka-fetch: venv
	$(TXMON) kafka fetch

lint: venv
	$(VENV)/bin/ruff check .

test: venv system-deps kafka-fetch
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not faults" -p no:cacheprovider

test-faults: venv system-deps kafka-fetch
	$(PY) -m pytest -m faults -p no:cacheprovider

demo: venv system-deps kafka-fetch
	bash scripts/demo.sh

down:
	-$(TXMON) demo down 2>/dev/null || true
	-$(TXMON) kafka down

bench: venv kafka-fetch
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
