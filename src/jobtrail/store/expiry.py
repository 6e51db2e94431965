"""ExpiryStore: unfinished work that outlived its promise — queued jobs never started before
their ``expires_at``, external jobs silent for longer than their ``report_timeout``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jobtrail import journal
from jobtrail.jobs import EventType, Job, NewEvent, Status, sources_of
from jobtrail.store.database import Database
from jobtrail.store.rows import JOB_COLUMNS, append_events, job_from_row
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
