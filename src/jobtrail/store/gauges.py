"""The metric gauges — every figure of one scrape, counters including purged jobs via the
rollups — and the duration histogram's one shape, shared by statistics, gauges and rollups."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobtrail.jobs import DURATION_BUCKETS
from jobtrail.states import TERMINAL, EventType, Status
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
    stmt = sa.select(jobs.c.kind, sa.func.sum(d), *cumulative_counts(d))
    for kind, total, *counts in conn.execute(stmt.where(d.is_not(None)).group_by(jobs.c.kind)):
        shot.durations[kind] = (buckets(counts), float(total or 0.0))


def _rollups(conn: Connection, shot: Snapshot) -> None:
    r = job_rollups.c
    for row in conn.execute(sa.select(r.kind, r.status, r.job_count, r.duration_sum, r.histogram)):
        shot.created[row.kind] = shot.created.get(row.kind, 0) + row.job_count
        key = (row.kind, row.status)
        shot.finished[key] = shot.finished.get(key, 0) + row.job_count
        known, total = shot.durations.get(row.kind, ([0] * (len(DURATION_BUCKETS) + 1), 0.0))
        shot.durations[row.kind] = (merged(known, row.histogram), total + row.duration_sum)


# -- the duration histogram, one shape for statistics, gauges and rollups --------------------


def cumulative_counts(duration: sa.ColumnElement[Any]) -> list[sa.ColumnElement[Any]]:
    """SQL aggregates: how many durations fall at or below each bound, then how many in all."""
    below = [sa.func.sum(sa.case((duration <= b, 1), else_=0)) for b in DURATION_BUCKETS]
    return [*below, sa.func.count(duration)]


def buckets(cumulative: Sequence[Any]) -> list[int]:
    """Per-bucket counts from ``cumulative_counts``' figures."""
    edges = [0, *(int(v or 0) for v in cumulative)]
    return [edges[i + 1] - edges[i] for i in range(len(edges) - 1)]


def bucket_counts(durations: Iterable[float]) -> list[int]:
    """Per-bucket counts of ``durations``, computed here (for rows about to be purged)."""
    counts = [0] * (len(DURATION_BUCKETS) + 1)
    for d in durations:
        counts[bisect.bisect_left(DURATION_BUCKETS, d)] += 1
    return counts


def merged(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Two histograms added bucket by bucket."""
    return [x + y for x, y in zip(a, b, strict=True)]
