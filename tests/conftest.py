"""Shared fixtures: every store test runs on a SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobtrail import Tracker
from jobtrail.store.database import create_engine
from jobtrail.store.migrate import upgrade
from tests.servers import PostgresServer, RedisServer, require, start_postgres, start_redis
from tests.webhook_receiver import Receiver, serving

TEMPLATE = "jobtrail_template"
_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server per test run, with a migrated template database."""
    server = require("PostgreSQL", start_postgres())
    try:
        engine = create_engine(server.create_database(TEMPLATE))
        upgrade(engine)
        engine.dispose()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated store: a SQLite file, or a PostgreSQL database cloned from a template."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobtrail.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"test_{next(_databases)}"
    url = server.create_database(name, template=TEMPLATE)
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture
def tracker(database_url: str) -> Iterator[Tracker]:
    """A tracker on a fresh store (opened: tests may reach its tables directly), writing
    progress at most every 50 ms."""
    with Tracker(database_url, flush_interval=0.05).open() as t:
        yield t


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server per test run (the Celery broker, and shared rate limits)."""
    server = require("redis-server", start_redis())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_celery(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The one Celery app of the test run: Celery registers task names process-wide, so every
    test uses this app and points its tracking at that test's store (``use_tracker``)."""
    from tests.apps.celery_app import make_app

    placeholder = Tracker(f"sqlite:///{tmp_path_factory.mktemp('celery') / 'unused.db'}")
    return make_app(redis_server.url(), placeholder)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback that verifies what it gets (``tests/webhook_receiver.py``)."""
    with serving() as served:
        yield served


# -- scheduling over xdist workers (`make test` runs `pytest -n`, `--dist loadgroup`) ----------

SLOW_FIRST = ("reliability", "e2e", "examples")
"""Test folders of real processes and long runs, started first so that a parallel run ends on
short tests instead of waiting for a long one that started late."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow folders first (a stable sort: each module keeps its order)."""
    items.sort(key=_start_order)


def _start_order(item: pytest.Item) -> int:
    folder = item.path.parent.name
    return SLOW_FIRST.index(folder) if folder in SLOW_FIRST else len(SLOW_FIRST)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup``, grouped by what the tests share: each test is its own unit of work,
    handed to the next idle worker, except that the tests of a module with a module-scoped
    fixture (a served app, a browser) go to one worker, which starts it once. (xdist's own
    ``xdist_group`` marks do nothing on pytest 9.2: pytest-dev/pytest-xdist#1386.)"""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    scheduler = LoadScopeScheduling(config, log)
    shared: dict[str, bool] = {}

    def unit(nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        if module not in shared:
            source = config.rootpath / module
            shared[module] = source.is_file() and 'scope="module"' in source.read_text()
        return module if shared[module] else nodeid

    scheduler._split_scope = unit
    return scheduler
