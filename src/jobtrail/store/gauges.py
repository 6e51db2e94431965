"""Gauges: what the metrics endpoint reports, read from the store at scrape time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobtrail.jobs import TERMINAL, EventType, Status
from jobtrail.store.queries import HISTOGRAM_BOUNDS
from jobtrail.store.tables import job_events, job_rollups, jobs


@dataclass
class Snapshot:
    """Every figure of one scrape; counters include jobs already purged (via rollups)."""

    jobs: dict[tuple[str, str, str], int] = field(default_factory=dict)  # kind, trigger, status
    finished: dict[tuple[str, str], int] = field(default_factory=dict)  # kind, status
    created: dict[str, int] = field(default_factory=dict)  # kind
    durations: dict[str, tuple[list[int], float]] = field(default_factory=dict)  # kind
    items: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind: done, failed
    queue_depth: dict[str, int] = field(default_factory=dict)
    oldest_queued: dict[str, float] = field(default_factory=dict)
    rescues: int = 0
    stalled: int = 0


def snapshot(conn: Connection, now: datetime) -> Snapshot:
    """Read every gauge in one transaction."""
    shot = Snapshot()
    c = jobs.c
    for kind, trigger, status, n in conn.execute(
        sa.select(c.kind, c.trigger, c.status, sa.func.count()).group_by(
            c.kind, c.trigger, c.status
        )
    ):
        shot.jobs[(kind, trigger, status)] = n
        shot.created[kind] = shot.created.get(kind, 0) + n
        if Status(status) in TERMINAL:
            shot.finished[(kind, status)] = shot.finished.get((kind, status), 0) + n
    _durations(conn, shot)
    _rollups(conn, shot)
    for kind, done, failed in conn.execute(
        sa.select(c.kind, sa.func.sum(c.items_done), sa.func.sum(c.items_failed)).group_by(c.kind)
    ):
        shot.items[kind] = (int(done or 0), int(failed or 0))
    for queue, n, oldest in conn.execute(
        sa.select(c.queue, sa.func.count(), sa.func.min(c.run_after))
        .where(c.status == Status.QUEUED.value, c.run_after <= now)
        .group_by(c.queue)
    ):
        shot.queue_depth[queue] = n
        shot.oldest_queued[queue] = _age(oldest, now)
    shot.rescues = int(
        conn.execute(
            sa.select(sa.func.count()).where(job_events.c.type == EventType.RESCUED.value)
        ).scalar_one()
    )
    shot.stalled = int(
        conn.execute(
            sa.select(sa.func.count()).where(c.status == Status.RUNNING.value, c.stalled.is_(True))
        ).scalar_one()
    )
    return shot


def _age(oldest: datetime | str | None, now: datetime) -> float:
    if oldest is None:
        return 0.0
    if isinstance(oldest, str):  # SQLite's MIN() of a timestamp comes back as text
        oldest = datetime.fromisoformat(oldest).replace(tzinfo=now.tzinfo)
    return max((now - oldest).total_seconds(), 0.0)


def _durations(conn: Connection, shot: Snapshot) -> None:
    d = jobs.c.duration_seconds
    cumulative = [sa.func.sum(sa.case((d <= b, 1), else_=0)) for b in HISTOGRAM_BOUNDS]
    stmt = sa.select(jobs.c.kind, *cumulative, sa.func.count(d), sa.func.sum(d))
    for kind, *below, n, total in conn.execute(stmt.where(d.is_not(None)).group_by(jobs.c.kind)):
        edges = [0, *(int(v or 0) for v in below), int(n)]
        buckets = [edges[i + 1] - edges[i] for i in range(len(edges) - 1)]
        shot.durations[kind] = (buckets, float(total or 0.0))


def _rollups(conn: Connection, shot: Snapshot) -> None:
    r = job_rollups.c
    for row in conn.execute(sa.select(r.kind, r.status, r.job_count, r.duration_sum, r.histogram)):
        shot.created[row.kind] = shot.created.get(row.kind, 0) + row.job_count
        key = (row.kind, row.status)
        shot.finished[key] = shot.finished.get(key, 0) + row.job_count
        buckets, total = shot.durations.get(row.kind, ([0] * (len(HISTOGRAM_BOUNDS) + 1), 0.0))
        merged = [a + b for a, b in zip(buckets, row.histogram, strict=True)]
        shot.durations[row.kind] = (merged, total + row.duration_sum)
