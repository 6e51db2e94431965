# One place for every command: `make demo`, `make test`, `make check`, `make bench`,
# `make bench-peers`, `make soak`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test check lint format bench bench-peers soak screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/system-deps.sh

demo: install
	$(BIN)/jobtrail demo

check: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src tests bench/peers

test: system-deps check
	$(BIN)/pytest

# The reliability suite for hours: every test SOAK_SCALE times larger, the load for
# SOAK_SECONDS per database (figures printed, and in load-report.txt under pytest's basetemp),
# and the schema-driven API fuzzing at 50 x SOAK_SCALE cases per operation.
SOAK_SCALE ?= 20
SOAK_SECONDS ?= 1800
soak: system-deps install
	JOBTRAIL_SOAK_SCALE=$(SOAK_SCALE) JOBTRAIL_SOAK_SECONDS=$(SOAK_SECONDS) \
		$(BIN)/pytest -s tests/reliability \
		"tests/test_web.py::test_the_api_conforms_to_its_openapi_document_under_every_check"

format: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: install
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.calls
	$(BIN)/python -m bench.pickup
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.celery_overhead

# jobtrail beside Celery, RQ, Dramatiq and Procrastinate in one run on this machine, on its own
# Redis and PostgreSQL: bench/results/peers.{json,md} and the profiles of docs/performance.md.
# PEERS_ARGS=--quick for a smoke run.
PEERS_ARGS ?=
bench-peers: system-deps install
	$(BIN)/python -m bench.peers $(PEERS_ARGS)
	$(BIN)/python -m bench.peers.profile

screenshots: system-deps install
	JOBTRAIL_SCREENSHOTS=1 $(BIN)/pytest tests/e2e/test_dashboard.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
