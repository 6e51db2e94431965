"""The one way into the database: engines, transactions, and the one translation of its errors."""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from jobtrail.exceptions import InvalidData, StoreError
from jobtrail.extras import require
from jobtrail.store.driver_errors import translated
from jobtrail.store.group_commit import Commits
from jobtrail.store.outage import Outage
from jobtrail.store.statements import RawSession
from jobtrail.store.watch import Doorbell, PostgresSource, Source, SQLiteSource, Watcher

Clock = Callable[[], datetime]
T = TypeVar("T")

READONLY = "jobtrail_readonly"
"""Execution option: a read-only transaction (a plain ``BEGIN`` on SQLite, no write lock)."""
OUTAGE_SECONDS = 30.0
"""How long a write that must not be lost (a job's outcome) retries through an outage."""


def utcnow() -> datetime:
    """The current time, tz-aware UTC."""
    return datetime.now(UTC)


def outage_retrying() -> Retrying:
    """The retry policy of writes that must survive a database restart: back off, up to
    ``OUTAGE_SECONDS``, on ``StoreError`` only."""
    return Retrying(
        retry=retry_if_exception_type(StoreError),
        wait=wait_exponential_jitter(multiplier=0.1, max=5.0),
        stop=stop_after_delay(OUTAGE_SECONDS),
        reraise=True,
    )


def sqlite_begin(write: bool) -> str:
    """How a SQLite transaction begins: writers take the write lock at once, so they wait on
    ``busy_timeout`` instead of failing when they upgrade a read lock."""
    return "BEGIN IMMEDIATE" if write else "BEGIN"


class Database:
    """One database: its engine, read/write/raw transactions, and commits shared by threads."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        statement_timeout: float = 0.0,
        clock: Clock = utcnow,
    ) -> None:
        self.url = url
        self.clock = clock
        self.engine: Engine = create_engine(url, pool_size, statement_timeout)
        self.dialect = self.engine.dialect.name
        dbapi = self.engine.dialect.dbapi
        assert dbapi is not None
        self._dbapi: Any = dbapi
        self.commits = Commits(self, outage_retrying)
        """The write-behind queue: commits shared while a worker runs, deferred writes."""
        self._after_commit: dict[int, list[Callable[[], object]]] = {}
        self.changes = Doorbell()
        """Rung after every commit: this process's at once, other processes' once
        ``watch`` has started (idle workers and open streams wait on it)."""
        self.doorbell = Doorbell(then=self.changes)
        """Rung when work became due in this process (a submit; a stopping worker)."""
        self._group_lock = threading.Lock()
        self._watcher: Watcher | None = None
        self.outage = Outage()
        """Whether the database is away: the loops that keep calling it note their failures
        there, so that an outage is logged once, not once per failed call."""
        self._opening: Callable[[], None] | None = None
        self._open_lock = threading.Lock()
        self.after_fork: list[Callable[[], object]] = []
        """Called in a forked child (Celery prefork, gunicorn ``--preload``), whose threads
        did not come along: the parts that run threads for this database start afresh."""
        _DATABASES.add(self)

    def close(self) -> None:
        """Land the deferred writes, stop watching and release every pooled connection."""
        self.commits.flush()
        with self._group_lock:
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        self.engine.dispose()

    def watch(self) -> None:
        """Ring ``changes`` for other processes' commits too, from now until ``close``."""
        if self._watcher is not None:
            return
        with self._group_lock:
            if self._watcher is None:
                self._watcher = Watcher("jobtrail-watch", self._change_source, self.changes)

    def _change_source(self) -> Source:
        """What the watcher watches, on a DBAPI connection of its own (outside the pool)."""
        dialect = self.engine.dialect
        args, kwargs = dialect.create_connect_args(self.engine.url)
        conn = dialect.connect(*args, **kwargs)
        if self.dialect == "postgresql":
            return PostgresSource(conn)
        return SQLiteSource(conn, str(self.engine.url.database))

    # -- the one error translator --------------------------------------------------------

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Translate the driver's errors (raw, or wrapped by SQLAlchemy; raw cursors and
        reconnects inside the pool raise them raw) into jobtrail's; a call that succeeds ends
        an outage."""
        try:
            yield
        except (sa.exc.DBAPIError, self._dbapi.Error) as exc:
            raise translated(exc, self._dbapi, self.dialect, self.url) from exc
        except OverflowError as exc:  # sqlite3 refuses integers past 64 bits before SQLite
            raise InvalidData(str(exc)) from exc
        self.outage.ended()

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (on SQLite the write lock is taken at BEGIN); what
        ``after_commit`` queued in it runs once it has committed."""
        later: list[Callable[[], object]] = []
        self._ready()
        with self.errors(), self.engine.begin() as conn:
            # Kept beside the connection, not in it: a connection the server dropped must
            # not be touched again on the way out (it raises until rolled back).
            self._after_commit[id(conn)] = later
            try:
                yield conn
            finally:
                self._after_commit.pop(id(conn), None)
        self.changes.ring()
        for action in later:
            action()

    def after_commit(self, conn: Connection, action: Callable[[], object]) -> None:
        """Run ``action`` once ``conn``'s write transaction has committed (at once outside
        one): log lines must neither describe a change that rolled back nor hold the write
        lock while a slow log stream takes them."""
        pending = self._after_commit.get(id(conn))
        if pending is None:
            action()
        else:
            pending.append(action)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction."""
        self._ready()
        with self.errors(), self.engine.connect() as conn:
            conn = conn.execution_options(**{READONLY: True})
            with conn.begin():
                yield conn

    @contextmanager
    def raw(self, write: bool | None) -> Iterator[RawSession]:
        """A transaction on a raw pooled connection, for prepared statements: committed on
        success, rolled back on error. ``write=None`` runs without an explicit transaction on
        SQLite (one statement is atomic anyway)."""
        self._ready()
        with self.errors():
            conn = self.engine.raw_connection()
        try:
            with self.errors():
                cursor = conn.cursor()
                try:
                    if self.dialect == "sqlite" and write is not None:
                        cursor.execute(sqlite_begin(write))
                    yield RawSession(cursor)
                    conn.commit()
                finally:
                    cursor.close()
        except BaseException:
            _rollback(conn)
            raise
        finally:
            conn.close()
        if write:
            self.changes.ring()

    def open_with(self, opening: Callable[[], None]) -> None:
        """Run ``opening`` (the store's schema check) before the first transaction: the
        database is connected to on first use, or at ``open()``."""
        self._opening = opening

    def open(self) -> None:
        """Connect and run the opening now (once; again after it failed)."""
        if self._opening is None:
            return
        with self._open_lock:
            opening = self._opening
            if opening is not None:
                try:
                    with self.errors():
                        opening()
                except BaseException:
                    self.engine.dispose()  # nothing of a refused opening stays connected
                    raise
                self._opening = None

    def _ready(self) -> None:
        """Before a transaction: opened, and this process's deferred writes landed."""
        if self._opening is not None:
            self.open()
        self.commits.settle()

    def through_outage(self, action: Callable[[], T]) -> T:
        """``action()`` (a store call), retried through a database outage (``outage_retrying``)
        so that what it records is not lost to a restart."""
        return outage_retrying()(action)

    def insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT for ``table`` (it has ``on_conflict_do_nothing/update``)."""
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return dialect_insert(table)

    def heartbeat_clock(self, now: Any) -> Any:
        """What heartbeats are written and compared with: the database's own clock on
        PostgreSQL (so skew between machines cannot cause false rescues), else ``now``."""
        return sa.func.now() if self.dialect == "postgresql" else now


def _rollback(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # the connection is broken; the pool discards it on close
        conn.invalidate()


# -- engines ----------------------------------------------------------------------------------


def normalize_url(url: str) -> URL:
    """The SQLAlchemy URL for ``url``, choosing psycopg 3 for plain ``postgresql://`` URLs."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        # Not echoed: a URL that does not parse may still hold a password.
        raise StoreError(
            "not a database URL (expected sqlite:///path/to/file.db or "
            "postgresql://user:password@host/database)"
        ) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database {parsed.drivername!r}: use sqlite or postgresql")
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StoreError("jobtrail needs a SQLite file, not an in-memory database")
    return parsed


_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
_DATABASES: weakref.WeakSet[Database] = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    # A forked child (Celery prefork, gunicorn --preload) must not use the parent's pooled
    # connections: it drops them, without closing the parent's, and opens its own. The
    # parent's watcher thread did not come along: the child starts its own when needed.
    for engine in list(_ENGINES):
        engine.dispose(close=False)
    for database in list(_DATABASES):
        database._watcher = None
        database.commits = Commits(database, outage_retrying)
        for reset in database.after_fork:
            reset()


os.register_at_fork(after_in_child=_forget_connections_after_fork)


def create_engine(url: str, pool_size: int = 10, statement_timeout: float = 0.0) -> Engine:
    """An engine for ``url``: SQLite in WAL mode with write locks taken up front, or
    PostgreSQL, whose statements end after ``statement_timeout`` seconds (0: never)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed, pool_size)
    else:
        require("postgres", "a PostgreSQL store")
        engine = sa.create_engine(
            parsed,
            connect_args={"options": _pg_options(parsed, statement_timeout)},
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            pool_recycle=1800,
        )
    _ENGINES.add(engine)
    return engine


def _pg_options(url: URL, statement_timeout: float) -> str:
    """libpq's ``options`` for ``url``'s connections: its own, then the statement timeout."""
    given = url.query.get("options", "")
    own = given if isinstance(given, str) else " ".join(given)
    return f"{own} -c statement_timeout={round(statement_timeout * 1000)}".strip()


def _sqlite_engine(url: URL, pool_size: int) -> Engine:
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=pool_size,
        max_overflow=pool_size * 4,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Transactions are begun explicitly (``sqlite_begin``), never by the driver.
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
        conn.exec_driver_sql(sqlite_begin(not readonly))

    return engine
