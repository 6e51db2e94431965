"""Shared fixtures: every store test runs on a SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobtrail import Tracker
from jobtrail.store.engine import create_engine
from jobtrail.store.schema import upgrade
from tests.servers import PostgresServer, require, start_postgres

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
    """A tracker on a fresh store, writing progress at most every 50 ms."""
    with Tracker(database_url, flush_interval=0.05) as t:
        yield t
