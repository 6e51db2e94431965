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
