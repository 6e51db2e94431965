"""FlowStore: how work flows — jobs finished per time bucket, and each queue's backlog and last
hour — read from the per-minute summaries plus the jobs finished since their watermark."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobtrail.jobs import QueueInfo
from jobtrail.states import ACTIVE, TERMINAL, Status
from jobtrail.store.database import Database
from jobtrail.store.summaries import MINUTES_KEPT, as_utc, minute_of, read_mark, unindexed
from jobtrail.store.tables import job_minutes, jobs

Counts = dict[str, int]
_TERMINAL = [s.value for s in TERMINAL]
_FAILURES = (Status.FAILED.value, Status.PARTIAL.value)


class FlowStore:
    """Throughput and queue figures at any number of jobs (no scan of the jobs table)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def finished(
        self, since: datetime, bucket: timedelta, owner: str | None = None
    ) -> dict[datetime, Counts]:
        """Jobs finished since ``since`` (at most ``MINUTES_KEPT`` ago) per ``bucket`` (a whole
        number of minutes) and status, buckets keyed by their start, oldest first."""
        if bucket < timedelta(minutes=1) or bucket % timedelta(minutes=1):
            raise ValueError("bucket must be a whole number of minutes")
        since = max(since, self._db.clock() - MINUTES_KEPT)
        step = int(bucket.total_seconds())
        counts: dict[datetime, Counts] = {}
        with self._db.read() as conn:
            for minute, _queue, status, n in self._minutes(conn, since, owner):
                start = datetime.fromtimestamp(int(minute.timestamp()) // step * step, UTC)
                bucketed = counts.setdefault(start, {})
                bucketed[status] = bucketed.get(status, 0) + n
        return dict(sorted(counts.items()))

    def queues(self, owner: str | None = None) -> list[QueueInfo]:
        """Every queue with work, or with jobs finished in the last hour, by name."""
        now = self._db.clock()
        c = jobs.c
        backlog: dict[str, Counts] = {}
        oldest: dict[str, float] = {}
        with self._db.read() as conn:
            mine = _owned(unindexed(c.owner), owner)  # the status index reads these
            stmt = sa.select(c.queue, c.status, sa.func.count()).where(
                c.status.in_([s.value for s in ACTIVE]), *mine
            )
            for queue, status, n in conn.execute(stmt.group_by(c.queue, c.status)):
                backlog.setdefault(queue, {})[status] = int(n)
            stmt = sa.select(c.queue, sa.func.min(c.run_after)).where(
                c.status == Status.QUEUED.value, c.run_after <= now, *mine
            )
            for queue, first in conn.execute(stmt.group_by(c.queue)):
                oldest[queue] = max((now - as_utc(first)).total_seconds(), 0.0)
            hour: dict[str, Counts] = {}
            for _minute, queue, status, n in self._minutes(conn, now - timedelta(hours=1), owner):
                counted = hour.setdefault(queue, {})
                counted[status] = counted.get(status, 0) + n
        return [
            QueueInfo(
                name=name,
                queued=backlog.get(name, {}).get(Status.QUEUED.value, 0),
                waiting=backlog.get(name, {}).get(Status.WAITING.value, 0),
                running=backlog.get(name, {}).get(Status.RUNNING.value, 0),
                oldest_queued_seconds=oldest.get(name),
                finished_last_hour=sum(hour.get(name, {}).values()),
                failed_last_hour=sum(hour.get(name, {}).get(s, 0) for s in _FAILURES),
            )
            for name in sorted(backlog.keys() | hour.keys())
        ]

    def _minutes(
        self, conn: Connection, since: datetime, owner: str | None
    ) -> Iterable[tuple[datetime, str, str, int]]:
        """``(minute, queue, status, count)`` of the jobs finished since ``since``: summed
        minutes up to the watermark, then the jobs finished after it."""
        mark = read_mark(conn)
        m = job_minutes.c
        summed = (
            sa.select(m.minute, m.queue, m.status, sa.func.sum(m.job_count))
            .where(m.minute >= _floor_minute(since), *_owned(m.owner, owner, unowned=""))
            .group_by(m.minute, m.queue, m.status)
        )
        for minute, queue, status, n in conn.execute(summed):
            # A summed minute cut by the watermark holds only what finished before it.
            yield as_utc(minute), queue, status, int(n)
        c = jobs.c
        minute = minute_of(self._db.dialect, c.completed_at)
        tail = (
            sa.select(minute, c.queue, c.status, sa.func.count())
            .where(
                c.completed_at >= max(mark, since),  # read from the completion index
                unindexed(c.status).in_(_TERMINAL),
                *_owned(unindexed(c.owner), owner),
            )
            .group_by(minute, c.queue, c.status)
        )
        for minute_value, queue, status, n in conn.execute(tail):
            yield as_utc(minute_value), queue, status, int(n)


def _owned(
    column: sa.ColumnElement[Any], owner: str | None, unowned: str | None = None
) -> list[sa.ColumnElement[bool]]:
    """``owner``'s rows only (None: everyone's; "": the unowned ones)."""
    if owner is None:
        return []
    if owner == "":
        return [column == unowned] if unowned is not None else [column.is_(None)]
    return [column == owner]


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)
