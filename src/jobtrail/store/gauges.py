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
from jobtrail.states import ACTIVE, TERMINAL, EventType, Status
from jobtrail.store.tables import job_events, job_rollups, jobs, schedule_runs, schedules
from jobtrail.store.workers import no_consumer

FIRED = "fired"
"""The outcome of a schedule slot that created its job (``scheduler.Outcome.FIRED``: the store
imports nothing of the runtime)."""


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
    unconsumed: dict[str, int] = field(default_factory=dict)  # queue: jobs no worker would take
    oldest_unconsumed: dict[str, float] = field(default_factory=dict)  # queue: seconds since due
    rescues: int = 0
    last_rescue_at: datetime | None = None  # a lost worker's job last requeued
    stalled: dict[str, int] = field(default_factory=dict)  # kind: running jobs flagged stalled
    overdue: dict[str, int] = field(default_factory=dict)  # kind: running jobs past timeout
    schedule_late: dict[str, float] = field(default_factory=dict)  # schedule: seconds late


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
    _queues(conn, shot, now)
    _running(conn, shot, now)
    _rescues(conn, shot, now)
    _schedules(conn, shot, now)
    return shot


def _queues(conn: Connection, shot: Snapshot, now: datetime) -> None:
    """Per queue: the due queued jobs, and the jobs parked because no live worker consumes
    it, each with the wait of its oldest (since it was due)."""
    c = jobs.c
    for queue, n, oldest in conn.execute(
        sa.select(c.queue, sa.func.count(), sa.func.min(c.run_after))
        .where(c.status == Status.QUEUED.value, c.run_after <= now)
        .group_by(c.queue)
    ):
        shot.queue_depth[queue] = n
        shot.oldest_queued[queue] = _age(oldest, now)
    # The reason the queue watch parks them with (``WorkerStore.watch_queues``).
    parked = c.wait_reason == sa.literal(no_consumer("")[:-1]) + c.queue + sa.literal("'")
    for queue, n, oldest in conn.execute(
        sa.select(c.queue, sa.func.count(), sa.func.min(c.run_after))
        .where(c.status == Status.WAITING.value, c.lease.is_(None), parked)
        .group_by(c.queue)
    ):
        shot.unconsumed[queue] = n
        shot.oldest_unconsumed[queue] = _age(oldest, now)


def _running(conn: Connection, shot: Snapshot, now: datetime) -> None:
    """Per kind, the running jobs flagged stalled and those running past their timeout (which
    the worker only enforces when the job's code next checks in)."""
    c = jobs.c
    watched = sa.or_(c.stalled.is_(True), c.timeout.is_not(None))
    for kind, stalled, started_at, timeout in conn.execute(
        sa.select(c.kind, c.stalled, c.started_at, c.timeout).where(
            c.status == Status.RUNNING.value, watched
        )
    ):
        if stalled:
            shot.stalled[kind] = shot.stalled.get(kind, 0) + 1
        if timeout is not None and started_at is not None and _age(started_at, now) > timeout:
            shot.overdue[kind] = shot.overdue.get(kind, 0) + 1


def _rescues(conn: Connection, shot: Snapshot, now: datetime) -> None:
    """The rescues counted from the history, and when a lost worker's job was last requeued
    (one read of the partial index on ``rescued`` events)."""
    e = job_events.c
    count, last = conn.execute(
        sa.select(sa.func.count(), sa.func.max(e.at)).where(e.type == EventType.RESCUED.value)
    ).one()
    shot.rescues = int(count)
    shot.last_rescue_at = None if last is None else _aware(last, now)


def _schedules(conn: Connection, shot: Snapshot, now: datetime) -> None:
    """How late each schedule is: since its next slot came due without being fired, or since
    its last fired slot, while that slot's job has not started (0: on time)."""
    s, r = schedules.c, schedule_runs.c
    last_fired = (
        sa.select(r.id)
        .where(r.schedule == s.name, r.outcome == FIRED)
        .order_by(r.id.desc())
        .limit(1)
        .correlate(schedules)
        .scalar_subquery()
    )
    joined = schedules.outerjoin(schedule_runs, r.id == last_fired).outerjoin(
        jobs, jobs.c.id == r.job_id
    )
    stmt = sa.select(s.name, s.next_run_at, r.slot_at, jobs.c.status, jobs.c.started_at)
    for name, next_run_at, slot_at, status, started_at in conn.execute(stmt.select_from(joined)):
        late = 0.0
        if next_run_at is not None:
            late = _age(next_run_at, now)
        unstarted = status is not None and Status(status) in ACTIVE and started_at is None
        if unstarted and slot_at is not None:
            late = max(late, _age(slot_at, now))
        shot.schedule_late[name] = late


def _age(oldest: datetime | str | None, now: datetime) -> float:
    if oldest is None:
        return 0.0
    return max((now - _aware(oldest, now)).total_seconds(), 0.0)


def _aware(at: datetime | str, now: datetime) -> datetime:
    if isinstance(at, str):  # SQLite's MIN() or MAX() of a timestamp comes back as text
        return datetime.fromisoformat(at).replace(tzinfo=now.tzinfo)
    return at


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
