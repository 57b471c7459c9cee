# `make test` and `make demo` set up everything they need on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: test demo lint typecheck pytest bench clean

# Re-installs when pyproject.toml changes; the stamp records the last successful install.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

lint: venv
	$(BIN)/ruff check python bench
	$(BIN)/ruff format --check python bench

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest

test: lint typecheck pytest

# nginx and wrk come from Debian: the gateway benchmark runs them beside signgate.
bench: venv
	bash bench/ensure-tools.sh
	$(PY) bench/bench_signer.py
	$(PY) bench/bench_gateway.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
