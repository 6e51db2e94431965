"""CeleryRows: the records of Celery tasks — inserted ``queued`` many at a time when
published, and adopted in one statement by the worker that starts them.

One prepared single-row statement run as a batch (SQLite's ``executemany``, a pipeline on
PostgreSQL) costs a fraction of a generic multi-row insert, whose SQL the driver would parse
afresh for every batch. A task whose record already exists — a worker took it first and
created it running — is skipped by ``ON CONFLICT DO NOTHING``, and so are its ``created``
event and labels: one job, one history. Adopting is ``RunStore.take_over``'s common case
(a queued or waiting job starts) as one prepared statement; the rest is left to it. A worker
that finds no record inserts one running, and yields to any record that exists or is being
inserted at the same moment (every unique index arbitrates, so racing the publisher's
insert on PostgreSQL is no error).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import sqlalchemy as sa

from jobtrail import journal
from jobtrail.jobs import Job, NewEvent, NewJob
from jobtrail.states import EventType, Status, sources_of
from jobtrail.store.database import Database
from jobtrail.store.group_commit import Batched
from jobtrail.store.rows import JOB_COLUMNS, job_from_row, label_rows, new_row, running_row
from jobtrail.store.statements import Prepared, RawSession, Statements, param, status_in
from jobtrail.store.tables import job_events, job_labels, jobs

c = jobs.c


class CeleryRows:
    """The statements that insert published tasks' records into one database and start
    them."""

    def __init__(self, database: Database) -> None:
        dialect = database.engine.dialect
        self._db = database
        self._statements = Statements(dialect, database.heartbeat_clock)
        insert = database.insert(jobs).values({col.name: param(col) for col in jobs.c})
        self._insert = Prepared(insert.on_conflict_do_nothing(), dialect)
        # What this transaction inserted: a record made elsewhere (a worker's) has another
        # creation time, or has started (attempt ≥ 1).
        fresh = sa.select(c.id).where(c.created_at == param(c.created_at), c.attempt == 0)
        self._fresh = Prepared(fresh, dialect, [c.id])
        self._label = Prepared(
            job_labels.insert().values({col.name: param(col) for col in job_labels.c}),
            dialect,
        )
        now = param(c.updated_at, "now")
        adopt = (
            jobs.update()
            .where(c.id == param(c.id), status_in(sources_of(Status.RUNNING) - {Status.RUNNING}))
            .values(
                status=Status.RUNNING.value,
                attempt=c.attempt + 1,
                lease=param(c.lease),
                worker=param(c.worker),
                started_at=now,
                heartbeat_at=database.heartbeat_clock(now),
                updated_at=now,
            )
            .returning(*JOB_COLUMNS)
        )
        self._adopt = Prepared(adopt, dialect, JOB_COLUMNS)
        # On PostgreSQL the started event rides in the same statement (one round trip less).
        self._adopt_noted = (
            Prepared(_noted(adopt, now), dialect, JOB_COLUMNS)
            if database.dialect == "postgresql"
            else None
        )

    def start(self, new: NewJob, lease: str, worker: str) -> Job | None:
        """Insert ``new`` running under ``lease`` (``created`` and ``started`` events); None
        when its record exists, or another transaction is inserting it."""
        now = self._db.clock()
        row = running_row(new, now, worker, lease)
        with self._db.raw(write=True) as session:
            if session.rowcount(self._insert, row) != 1:
                return None
            session.execute_many(self._label, label_rows(row["id"], row["labels"]))
            events = [NewEvent(EventType.CREATED), NewEvent(EventType.STARTED, _started(1, worker))]
            self._statements.append(session, now, [(row["id"], e) for e in events])
        return job_from_row(row, now)

    def adopt(self, job_id: str, lease: str, worker: str) -> Job | None:
        """Start a queued or waiting job under ``lease`` (a ``started`` event); None when it
        is in any other state or does not exist (``RunStore.take_over`` knows what to do)."""
        now = self._db.clock()
        values = {"id": job_id, "lease": lease, "worker": worker, "now": now}
        with self._db.raw(write=True) as session:
            if self._adopt_noted is not None:
                rows = session.execute(self._adopt_noted, values)
            else:
                rows = session.execute(self._adopt, values)
                if rows:
                    started = NewEvent(EventType.STARTED, _started(rows[0]["attempt"], worker))
                    self._statements.append(session, now, [(job_id, started)])
        return job_from_row(rows[0], now) if rows else None

    def add(self, news: Sequence[NewJob]) -> list[str]:
        """Insert the records of ``news`` (queued, not yet started) in one transaction; the
        ids of those inserted (the others existed)."""
        with self._db.raw(write=True) as session:
            inserted = self._add_in(session, news)
        journal.created(inserted.values())
        return list(inserted)

    def add_soon(self, new: NewJob, lost: Callable[[NewJob, BaseException], object]) -> None:
        """Queue the record of ``new`` on the database's write-behind queue, inserted with the
        others queued by then in one batch; every read of this database in this process waits
        for it first. ``lost(new, error)`` if it could not be written."""

        def landed(done: Future[Any]) -> None:
            error = done.exception()
            if error is not None:
                lost(new, error)
            elif new.id in done.result():
                journal.created([done.result()[new.id]])

        self._db.commits.defer([new.id], Batched(self._add_in, new), landed)

    def _add_in(self, session: RawSession, news: Sequence[NewJob]) -> dict[str, dict[str, Any]]:
        """Insert the records of ``news`` in ``session``; the rows inserted, by id."""
        now = self._db.clock()
        rows = [new_row(new, now) for new in news]
        fresh = self._write(session, rows, now)
        return {row["id"]: row for row in rows if row["id"] in fresh}

    def _write(self, session: RawSession, rows: list[dict[str, Any]], now: Any) -> set[str]:
        session.execute_many(self._insert, rows)
        ours = {row["id"] for row in rows}
        fresh = {r["id"] for r in session.execute(self._fresh, {"created_at": now})} & ours
        inserted = [row for row in rows if row["id"] in fresh]
        labels = [label for row in inserted for label in label_rows(row["id"], row["labels"])]
        session.execute_many(self._label, labels)
        created = NewEvent(EventType.CREATED)
        self._statements.append(session, now, [(row["id"], created) for row in inserted])
        return fresh


def _started(attempt: int, worker: str) -> str:
    """The message of an adopted job's ``started`` event (as ``RunStore.take_over`` writes)."""
    return f"attempt {attempt} on {worker}"


def _noted(adopt: sa.Update, now: sa.BindParameter[Any]) -> sa.Select[Any]:
    """``adopt`` with its ``started`` event inserted by the same statement (PostgreSQL's
    data-modifying CTEs): the event exists exactly when the job moved."""
    moved = adopt.cte("moved")
    message = (
        sa.literal("attempt ")
        + sa.cast(moved.c.attempt, sa.String)
        + sa.literal(" on ")
        + param(c.worker)
    )
    event = sa.select(moved.c.id, now, sa.literal(EventType.STARTED.value), message)
    noted = job_events.insert().from_select(["job_id", "at", "type", "message"], event)
    return sa.select(*(moved.c[col.name] for col in JOB_COLUMNS)).add_cte(noted.cte("noted"))
