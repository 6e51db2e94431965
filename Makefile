# One place for every command: `make demo`, `make test`, `make check`, `make bench`, `make soak`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AXE := .cache/axe-core-4.14.1/axe.min.js

.PHONY: install system-deps demo test check lint format bench soak screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# axe-core for the browser tests' accessibility checks: pinned, checksum-verified, from npm.
$(AXE): scripts/vendor-axe.sh
	bash scripts/vendor-axe.sh

install: $(STAMP) $(AXE)

system-deps:
	bash scripts/system-deps.sh

demo: install
	$(BIN)/jobtrail demo

check: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src tests

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
	$(BIN)/python -m bench.stats

screenshots: system-deps install
	JOBTRAIL_SCREENSHOTS=1 $(BIN)/pytest tests/e2e/test_dashboard.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
