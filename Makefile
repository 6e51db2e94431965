# One place for every command: `make demo`, `make test`, `make check`, `make bench`,
# `make bench-peers`, `make soak`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEERS_STAMP := $(VENV)/.installed-bench-peers
AXE := .cache/axe-core-4.14.1/axe.min.js

.PHONY: install system-deps demo test check check-peers lint format bench bench-peers soak \
	screenshots clean \
	example-document_ingest example-message_trace example-listing_sync example-media_sync

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The rival queues (`bench-peers` extra): only `make bench-peers` and `make test` install them.
$(PEERS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench-peers]'
	touch $(PEERS_STAMP)

# axe-core for the browser tests' accessibility checks: pinned, checksum-verified, from npm.
$(AXE): scripts/vendor-axe.sh
	bash scripts/vendor-axe.sh

install: $(STAMP)

system-deps:
	bash scripts/system-deps.sh

demo: install
	$(BIN)/jobtrail demo

check: install
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy --strict src tests examples --exclude '^tests/test_bench_peers\.py$$'
	$(BIN)/lint-imports

# mypy over the peers needs them installed: so here, and `check` never pulls the rival queues.
check-peers: $(PEERS_STAMP)
	$(BIN)/mypy --strict bench/peers tests/test_bench_peers.py

# The suite on TEST_WORKERS parallel pytest-xdist workers, each with its own PostgreSQL and Redis
# (most tests wait on subprocesses, so more workers than the two cores pay). `pytest FILE` runs
# serially; `pytest -n 3 FILE` in parallel.
TEST_WORKERS ?= 3
test: system-deps check check-peers $(AXE)
	$(BIN)/pytest -n $(TEST_WORKERS)

# The reliability suite for hours: every test SOAK_SCALE times larger, the load for
# SOAK_SECONDS per database (figures printed, and in load-report.txt under pytest's basetemp),
# and the schema-driven API fuzzing at 50 x SOAK_SCALE cases per operation.
SOAK_SCALE ?= 20
SOAK_SECONDS ?= 1800
soak: system-deps install
	JOBTRAIL_SOAK_SCALE=$(SOAK_SCALE) JOBTRAIL_SOAK_SECONDS=$(SOAK_SECONDS) \
		$(BIN)/pytest -s tests/reliability \
		"tests/web/test_openapi.py::test_the_api_conforms_to_its_openapi_document_under_every_check"

format: install
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

bench: install
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.calls
	$(BIN)/python -m bench.pickup
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.celery_overhead
	$(BIN)/python -m bench.stats
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.alert_latency

# The examples (examples/<name>/README.md): each starts what it needs on loopback, its own
# redis-server included, with a demo dataset; Ctrl-C stops it all.
# REMOTE=1 also starts a Celery worker for the "remote" queue (scans).
example-document_ingest: system-deps install
	$(BIN)/python -m examples.document_ingest $(if $(REMOTE),--remote)

example-message_trace: system-deps install
	$(BIN)/python -m examples.message_trace

# An example (examples/NAME/README.md) on loopback: its fake upstream on UPSTREAM_PORT, its app
# on EXAMPLE_PORT over a fresh SQLite store in .examples/NAME/, then its demo data; Ctrl-C stops all.
EXAMPLE_PORT ?= 8000
UPSTREAM_PORT ?= 8001
example-listing_sync example-media_sync: example-%: install
	@rm -rf .examples/$* && mkdir -p .examples/$*
	@$(BIN)/uvicorn examples.$*.upstream:app --host 127.0.0.1 --port $(UPSTREAM_PORT) \
		--log-level warning & upstream=$$!; \
	JOBTRAIL_DATABASE_URL=sqlite:///.examples/$*/jobtrail.db \
	$(shell echo $* | tr a-z A-Z)_UPSTREAM_URL=http://127.0.0.1:$(UPSTREAM_PORT) \
		$(BIN)/uvicorn examples.$*.app:app --host 127.0.0.1 --port $(EXAMPLE_PORT) & app=$$!; \
	trap 'kill $$app $$upstream 2>/dev/null; wait' EXIT INT TERM; \
	$(BIN)/python -m examples.$*.demo http://127.0.0.1:$(EXAMPLE_PORT); \
	wait

# jobtrail beside Celery, RQ, Dramatiq and Procrastinate in one run on this machine, on its own
# Redis and PostgreSQL: bench/results/peers.{json,md} and the profiles of docs/performance.md.
# PEERS_ARGS=--quick for a smoke run.
PEERS_ARGS ?=
bench-peers: system-deps $(PEERS_STAMP)
	$(BIN)/python -m bench.peers $(PEERS_ARGS)
	$(BIN)/python -m bench.peers.profile

screenshots: system-deps install $(AXE)
	JOBTRAIL_SCREENSHOTS=1 $(BIN)/pytest tests/e2e/test_dashboard.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
