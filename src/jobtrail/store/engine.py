"""Engines for the two supported databases, tuned for many short transactions from threads."""

from __future__ import annotations

import os
import sqlite3
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from jobtrail.exceptions import StoreError

READONLY = "jobtrail_readonly"
"""Execution option: a read-only transaction (a plain ``BEGIN`` on SQLite, no write lock)."""


def normalize_url(url: str) -> URL:
    """The SQLAlchemy URL for ``url``, choosing psycopg 3 for plain ``postgresql://`` URLs."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database {parsed.drivername!r}: use sqlite or postgresql")
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StoreError("jobtrail needs a SQLite file, not an in-memory database")
    return parsed


_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    # A forked child (Celery prefork, gunicorn --preload) must not use the parent's pooled
    # connections: it drops them, without closing the parent's, and opens its own.
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_connections_after_fork)


def create_engine(url: str, pool_size: int = 10) -> Engine:
    """An engine for ``url``: SQLite in WAL mode with write locks taken up front, or PostgreSQL."""
    parsed = normalize_url(url)
    engine = (
        _sqlite_engine(parsed, pool_size)
        if parsed.get_backend_name() == "sqlite"
        else _postgresql_engine(parsed, pool_size)
    )
    _ENGINES.add(engine)
    return engine


def _postgresql_engine(parsed: URL, pool_size: int) -> Engine:
    return sa.create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def _sqlite_engine(url: URL, pool_size: int) -> Engine:
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=pool_size,
        max_overflow=pool_size * 4,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Transactions are begun explicitly below, so that writers take the lock at BEGIN
        # and wait on busy_timeout instead of failing when they upgrade a read lock.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get(READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine
