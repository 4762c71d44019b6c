# Targets explain themselves: `make help`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: help install serve test lint format check bench lock clean

help:  ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.lock -e .
	touch $@

install: $(BIN)/.installed  ## Create .venv with the locked dependencies

serve: install  ## Run the API on the embedded SQLite database
	$(BIN)/loyalty serve

test: install  ## Run every test, on SQLite and on Postgres (Postgres must be reachable)
	$(BIN)/pytest
	# Fault injection restarts the Postgres cluster, so it runs on its own.
	$(BIN)/pytest -m faults

lint: install  ## ruff check, ruff format --check, mypy --strict, import-linter contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install  ## Format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: lint test  ## Everything CI runs

bench: install  ## Benchmarks: the API vs pgbench on the same SQL (needs pgbench and wrk)
	$(BIN)/python -m benchmarks

lock:  ## Re-pin dependencies into the lock files
	uv pip compile pyproject.toml -o requirements.lock --python-version 3.11
	uv pip compile pyproject.toml --extra dev -o requirements-dev.lock --python-version 3.11

clean:  ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
