# batchllm developer tasks. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN ?= $(VENV)/bin
DEMO_JOB ?= jobs/ticket_triage.toml
DEMO_SQL ?= select split_part(output, ' ', 1) as category, count(*) as tickets, round(sum(cost_usd), 5) as cost_usd from results group by 1 order by 2 desc

.DEFAULT_GOAL := help
.PHONY: help venv install install-dev demo demo-run demo-images test lint typecheck check bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

venv: $(VENV)/bin/python ## Create the virtual environment (.venv)

install: venv ## Install batchllm into .venv
	$(BIN)/python -m pip install -q --disable-pip-version-check -e .

install-dev: venv ## Install batchllm with the dev extras (tests, lint, types)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'

demo: install demo-run ## Run the example job on the simulated provider and query its results

demo-run: ## The demo's two commands, on an installed batchllm
	$(BIN)/batchllm run $(DEMO_JOB)
	$(BIN)/batchllm query $(DEMO_JOB) "$(DEMO_SQL)"

demo-images: install-dev ## Tag the sample product photos on the simulated provider (needs Pillow)
	$(BIN)/python sample_data/make_media.py
	$(BIN)/batchllm run jobs/image_tags.toml
	$(BIN)/batchllm query jobs/image_tags.toml "select shape, colour, count(*) from results group by all order by 3 desc limit 10"

test: install-dev ## Run the whole test suite
	$(BIN)/python -m pytest

lint: install-dev ## Lint and format check (ruff)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev ## Type check the package (mypy --strict)
	$(BIN)/mypy

check: lint typecheck test ## Everything CI runs: lint, types, tests

bench: install ## Benchmarks against the simulated provider
	$(BIN)/python -m batchllm.bench

clean: ## Remove the venv, caches and example runs
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache *.egg-info
