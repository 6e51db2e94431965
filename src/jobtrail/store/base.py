"""StoreBase: the engine, transactions and error translation that every store method uses."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from jobtrail.exceptions import InvalidData, JobNotFound, StoreError
from jobtrail.jobs import Job, Status
from jobtrail.store.engine import READONLY, create_engine
from jobtrail.store.grouping import GroupCommit
from jobtrail.store.hot import HotStatements
from jobtrail.store.prepared import RawSession, raw_transaction
from jobtrail.store.records import NewEvent
from jobtrail.store.rows import JOB_COLUMNS, job_from_row
from jobtrail.store.schema import ensure_schema
from jobtrail.store.tables import job_events, jobs

Clock = Callable[[], datetime]
T = TypeVar("T")

HELD_STATUSES = frozenset({Status.RUNNING, Status.WAITING})
"""States in which a runner holds a job (by its lease) and may write progress."""
HELD = [s.value for s in HELD_STATUSES]


def utcnow() -> datetime:
    """The current time, tz-aware UTC."""
    return datetime.now(UTC)


class StoreBase:
    """Connections, transactions and the small writes every part of the store shares."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        auto_migrate: bool = True,
        clock: Clock = utcnow,
    ) -> None:
        self.url = url
        self.clock = clock
        self.engine: Engine = create_engine(url, pool_size)
        self.dialect = self.engine.dialect.name
        self.hot = HotStatements(self.engine.dialect)
        self._group: GroupCommit | None = None
        self._group_users = 0
        self._group_lock = threading.Lock()
        try:
            with self._errors():
                ensure_schema(self.engine, auto_migrate)
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def start_grouping(self) -> None:
        """Share commits between threads' small writes until ``stop_grouping`` (workers do)."""
        with self._group_lock:
            self._group_users += 1
            if self._group is None:
                self._group = GroupCommit(self.engine)

    def stop_grouping(self) -> None:
        """Undo one ``start_grouping``; the last one commits what is pending and stops."""
        with self._group_lock:
            self._group_users -= 1
            group = self._group if self._group_users == 0 else None
            if group is not None:
                self._group = None
        if group is not None:
            group.close()

    def run_write(self, write: Callable[[RawSession], T]) -> T:
        """Run a raw write in its own transaction, or in a shared one while grouping."""
        group = self._group
        if group is not None:
            return group.run(write)
        with raw_transaction(self.engine, write=True) as session:
            return write(session)

    def run_write_soon(self, write: Callable[[RawSession], bool], what: str) -> None:
        """Run a raw write without waiting for its commit while grouping (else at once).

        Used for outcomes of jobs a worker ran: the worker goes on to its next job while the
        commit is shared with the others'. A write that fails even on its own is logged; its
        job, no longer heartbeated, is then rescued by the usual rules.
        """
        group = self._group
        if group is None:
            self.run_write(write)
            return
        future = group.submit(write)
        future.add_done_callback(lambda done: _log_failure(done, what))

    # -- plumbing -----------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.DataError as exc:
            raise InvalidData(str(exc.orig).splitlines()[0]) from exc
        except sa.exc.DBAPIError as exc:
            raise StoreError(f"database error: {exc.orig!r}") from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (on SQLite the write lock is taken at BEGIN)."""
        with self._errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction."""
        with self._errors(), self.engine.connect() as conn:
            conn = conn.execution_options(**{READONLY: True})
            with conn.begin():
                yield conn

    def _insert(self, table: sa.Table) -> Any:
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return dialect_insert(table)

    @staticmethod
    def _log_events(conn: Connection, at: datetime, events: Iterable[tuple[str, NewEvent]]) -> None:
        """Append events of any jobs in one statement."""
        rows = [e.row(job_id, at) for job_id, e in events]
        if rows:
            conn.execute(job_events.insert(), rows)

    @classmethod
    def _append_events(
        cls, conn: Connection, job_id: str, at: datetime, events: Iterable[NewEvent]
    ) -> None:
        cls._log_events(conn, at, ((job_id, e) for e in events))

    def _get(self, conn: Connection, job_id: str) -> Job:
        row = conn.execute(sa.select(*JOB_COLUMNS).where(jobs.c.id == job_id)).one_or_none()
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(row._mapping, self.clock())


def _log_failure(done: Future[bool], what: str) -> None:
    error = done.exception()
    if error is not None:
        import structlog

        structlog.get_logger("jobtrail.store").error(
            "a write was lost", what=what, error=str(error)
        )
