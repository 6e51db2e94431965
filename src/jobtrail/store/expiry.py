"""ExpiryStore: unfinished work that outlived its promise — jobs whose runner stopped
heartbeating, queued jobs never started before their ``expires_at``, external jobs silent for
longer than their ``report_timeout``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jobtrail import journal
from jobtrail.jobs import Job, NewEvent
from jobtrail.states import HELD, EventType, Status, sources_of
from jobtrail.store.database import Database
from jobtrail.store.rows import JOB_COLUMNS, append_events, job_from_row
from jobtrail.store.runs import rescued
from jobtrail.store.statements import status_in
from jobtrail.store.tables import jobs

c = jobs.c

EXPIRED = "expired"
"""The ``error_message`` of a job that expired before it started."""
BATCH = 1000


class ExpiryStore:
    """Ends jobs whose time ran out; every change is a compare-and-set from the states
    ``TRANSITIONS`` allows, so a job that started (or reported) meanwhile is left alone."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def rescue(self, heartbeat_timeout: float) -> list[Job]:
        """Take back held jobs (running, or waiting by ``ctx.wait``) whose heartbeat is older
        than ``heartbeat_timeout`` seconds.

        Jobs with attempts left go back to ``queued`` (a ``rescued`` event); the others end
        ``failed`` with "worker lost". Their old runner's lease stops working either way.
        """
        now = self._db.clock()
        stale = sa.and_(
            c.heartbeat_at < self._db.heartbeat_clock(now) - timedelta(seconds=heartbeat_timeout),
            # An external job with a report timeout is timed out by that (``ExpiryStore``).
            sa.or_(c.report_timeout.is_(None), c.lease.is_not(None)),
            # A waiting job without a lease waits for a worker: no heartbeat to lose.
            sa.or_(c.status != Status.WAITING.value, c.lease.is_not(None)),
        )
        back = (
            jobs.update()
            .where(
                status_in(sources_of(Status.QUEUED, among=HELD)),
                stale,
                c.attempt < c.max_attempts,
            )
            # ``worker`` keeps the lost worker's name; the next claim replaces it.
            .values(status=Status.QUEUED.value, run_after=now, lease=None, updated_at=now)
            .values(wait_reason=None)
            .returning(*JOB_COLUMNS)
        )
        lost = (
            jobs.update()
            .where(
                status_in(sources_of(Status.FAILED, among=HELD)),
                stale,
                c.attempt >= c.max_attempts,
            )
            .values(
                status=Status.FAILED.value,
                error_message="worker lost",
                completed_at=now,
                updated_at=now,
                lease=None,
            )
            .returning(*JOB_COLUMNS)
        )
        with self._db.write() as conn:
            requeued = conn.execute(back).all()
            failed = conn.execute(lost).all()
            events = [(r.id, rescued(r.worker)) for r in requeued]
            events += [(r.id, NewEvent(EventType.FAILED, "worker lost")) for r in failed]
            append_events(conn, now, events)
        return [job_from_row(r._mapping, now) for r in [*requeued, *failed]]

    def expire(self) -> list[Job]:
        """End what ran out of time now: unstarted queued or waiting jobs past ``expires_at``
        end ``cancelled`` ("expired"); external jobs held by no runner, running or waiting with
        no report for ``report_timeout`` seconds, end ``failed`` ("no report since …")."""
        ended: list[Job] = []
        while True:
            batch = self._expire_unstarted() + self._fail_silent()
            for job in batch:  # the journal's line: "expired", or "failed" for a silent one
                journal.job_changed("expired" if job.status is Status.CANCELLED else "failed", job)
            ended += batch
            if len(batch) < BATCH:
                return ended

    def _expire_unstarted(self) -> list[Job]:
        now = self._db.clock()
        among = {Status.QUEUED, Status.WAITING}
        due = sa.and_(
            status_in(sources_of(Status.CANCELLED, among=among)),
            c.started_at.is_(None),
            c.expires_at < now,
        )
        with self._db.write() as conn:
            ids = list(conn.execute(sa.select(c.id).where(due).limit(BATCH)).scalars())
            if not ids:
                return []
            rows = conn.execute(
                jobs.update()
                .where(c.id.in_(ids), due)
                .values(
                    status=Status.CANCELLED.value,
                    error_message=EXPIRED,
                    completed_at=now,
                    updated_at=now,
                )
                .returning(*JOB_COLUMNS)
            ).all()
            events = [(r.id, _expired(r.expires_at)) for r in rows]
            append_events(conn, now, events)
        return [job_from_row(r._mapping, now) for r in rows]

    def _fail_silent(self) -> list[Job]:
        now = self._db.clock()
        among = {Status.RUNNING, Status.WAITING}
        watched = sa.and_(
            status_in(sources_of(Status.FAILED, among=among)),
            c.external.is_(True),
            c.report_timeout.is_not(None),
            c.lease.is_(None),
        )
        columns = (c.id, c.heartbeat_at, c.created_at, c.started_at, c.report_timeout)
        with self._db.write() as conn:
            silent = [
                row
                for row in conn.execute(sa.select(*columns).where(watched))
                if (row.heartbeat_at or row.created_at)
                < now - timedelta(seconds=row.report_timeout)
            ][:BATCH]
            ended = [r for row in silent if (r := _fail(conn, row, now)) is not None]
            events = [(r.id, NewEvent(EventType.FAILED, r.error_message)) for r in ended]
            append_events(conn, now, events)
        return [job_from_row(r._mapping, now) for r in ended]


def _fail(conn: sa.Connection, silent: Any, now: datetime) -> sa.Row[Any] | None:
    """Fail one silent job, unless a report landed meanwhile (its heartbeat moved)."""
    beat = silent.heartbeat_at
    since = (beat or silent.created_at).isoformat(timespec="seconds")
    started = silent.started_at
    return conn.execute(
        jobs.update()
        .where(
            c.id == silent.id,
            status_in(sources_of(Status.FAILED)),
            c.heartbeat_at.is_(None) if beat is None else c.heartbeat_at == beat,
        )
        .values(
            status=Status.FAILED.value,
            error_message=f"no report since {since}",
            completed_at=now,
            updated_at=now,
            duration_seconds=None if started is None else (now - started).total_seconds(),
        )
        .returning(*JOB_COLUMNS)
    ).one_or_none()


def _expired(expires_at: datetime | None) -> NewEvent:
    moment = "" if expires_at is None else f" by {expires_at.isoformat(timespec='seconds')}"
    return NewEvent(EventType.CANCELLED, f"expired: not started{moment}", {"reason": EXPIRED})
