# Two commands on a fresh machine with Python >= 3.11, make and apt-get:
#   make demo   the main job on the embedded default (emulated tenant + SQLite)
#   make test   set-up, lint, type-check, import contracts and every test (SQLite and PostgreSQL)
# While working on the code, `make fast` runs the pure core, engine and config tests only.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test fast machine lint typecheck imports unit install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rotator demo

# System packages the suite uses (Chromium, shellcheck, ...) and a running PostgreSQL.
machine:
	@bash tests/prepare-machine.sh

lint: $(STAMP)
	$(BIN)/ruff check rotator tests migrations

typecheck: $(STAMP)
	$(BIN)/mypy

# The architecture's import rules ([tool.importlinter] in pyproject.toml).
imports: $(STAMP)
	$(BIN)/lint-imports --no-cache

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# tests/unit (the pure core and the config tests) and tests/engine (the real steps on
# SQLite with fake Graph, Key Vault and token endpoint): no server, no PostgreSQL, no
# system tool. About 20 seconds on 2 cores; `make test` runs everything.
fast: $(STAMP)
	$(BIN)/pytest -q tests/unit tests/engine

test: machine lint typecheck imports
	$(BIN)/pytest -q -ra --strict-skips

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
