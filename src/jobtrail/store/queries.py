"""The SQL behind listings and statistics: filters and aggregates, each served by an index."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobtrail.jobs import ACTIVE, Filters, Stats, Status
from jobtrail.store.tables import job_rollups, jobs

HISTOGRAM_BOUNDS: tuple[float, ...] = (
    0.1,
    0.5,
    1,
    2,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
    4 * 3600,
    24 * 3600,
)
"""Upper bounds (seconds) of the duration buckets kept in rollups; one more holds the rest."""

_FINISHED = [Status.SUCCEEDED.value, Status.PARTIAL.value, Status.FAILED.value]


def listing_conditions(filters: Filters) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses for ``filters``."""
    c = jobs.c
    conditions: list[sa.ColumnElement[bool]] = []
    if filters.nothing:
        conditions.append(sa.false())
    if filters.owner is not None:
        conditions.append(c.owner == filters.owner)
    if filters.statuses:
        conditions.append(c.status.in_([Status(s).value for s in filters.statuses]))
    if filters.kind is not None:
        conditions.append(c.kind == filters.kind)
    if filters.priority is not None:
        conditions.append(c.priority == filters.priority.rank)
    if filters.trigger is not None:
        conditions.append(c.trigger == filters.trigger)
    if filters.created_from is not None:
        conditions.append(c.created_at >= filters.created_from)
    if filters.created_to is not None:
        conditions.append(c.created_at < filters.created_to)
    if filters.q:
        pattern = "%" + _escape_like(filters.q) + "%"
        conditions.append(
            sa.or_(
                c.id == filters.q,
                c.key == filters.q,
                c.message.like(pattern, escape="\\"),
            )
        )
    return conditions


def window_start(now: datetime, days: int) -> datetime:
    """The start of a ``days``-day statistics window: UTC midnight, ``days - 1`` days ago.

    Whole days, so live jobs and the daily rollups of purged ones share one boundary.
    """
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=days - 1)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class StatsQuery:
    """Statistics over jobs created since ``since``, optionally for one owner or kind."""

    since: datetime
    owner: str | None
    kind: str | None

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = [jobs.c.created_at >= self.since]
        if self.owner is not None:
            conditions.append(jobs.c.owner == self.owner)
        if self.kind is not None:
            conditions.append(jobs.c.kind == self.kind)
        return conditions

    def _groups(self, conn: Connection) -> tuple[dict[str, int], dict[str, int], int, float]:
        """Counts by status and by kind, and the count and sum of durations.

        Three small scans, each served by a covering index, beat one scan that must visit
        every row of the window."""
        c = jobs.c
        counts: list[dict[str, int]] = []
        for column in (c.status, c.kind):
            stmt = sa.select(column, sa.func.count()).where(*self.conditions()).group_by(column)
            counts.append({str(key): int(n) for key, n in conn.execute(stmt)})
        timed, total = conn.execute(
            sa.select(sa.func.count(c.duration_seconds), sa.func.sum(c.duration_seconds)).where(
                *self.conditions()
            )
        ).one()
        return counts[0], counts[1], int(timed), float(total or 0.0)

    def _percentiles(
        self, conn: Connection, n: int, fractions: tuple[float, ...]
    ) -> list[float | None]:
        """Nearest-rank percentiles of durations, all from one ordered pass."""
        if n == 0:
            return [None] * len(fractions)
        ranks = [max(math.ceil(f * n), 1) for f in fractions]
        duration = jobs.c.duration_seconds
        ordered = (
            sa.select(duration, sa.func.row_number().over(order_by=duration).label("rank"))
            .where(*self.conditions(), duration.is_not(None))
            .subquery()
        )
        stmt = sa.select(ordered.c.rank, ordered.c.duration_seconds).where(
            ordered.c.rank.in_(ranks)
        )
        found = {int(rank): float(value) for rank, value in conn.execute(stmt)}
        return [found.get(rank) for rank in ranks]

    def _active(self, conn: Connection) -> int:
        conditions: list[sa.ColumnElement[bool]] = [jobs.c.status.in_([s.value for s in ACTIVE])]
        if self.owner is not None:
            conditions.append(jobs.c.owner == self.owner)
        if self.kind is not None:
            conditions.append(jobs.c.kind == self.kind)
        stmt = sa.select(sa.func.count()).select_from(jobs).where(*conditions)
        return int(conn.execute(stmt).scalar_one())

    def rollups(self, conn: Connection) -> list[sa.Row[Any]]:
        """Daily rollups of purged jobs in the window (day × kind × owner × status rows)."""
        r = job_rollups.c
        conditions: list[sa.ColumnElement[bool]] = [r.day >= self.since.date()]
        if self.owner is not None:
            conditions.append(r.owner == self.owner)
        if self.kind is not None:
            conditions.append(r.kind == self.kind)
        return list(conn.execute(sa.select(job_rollups).where(*conditions)).all())

    def _live_histogram(self, conn: Connection) -> list[int]:
        duration = jobs.c.duration_seconds
        cumulative = [sa.func.sum(sa.case((duration <= b, 1), else_=0)) for b in HISTOGRAM_BOUNDS]
        stmt = sa.select(*cumulative, sa.func.count(duration)).where(*self.conditions())
        *below, total = (int(v or 0) for v in conn.execute(stmt).one())
        edges = [0, *below, total]
        return [edges[i + 1] - edges[i] for i in range(len(edges) - 1)]

    def run(self, conn: Connection, days: int) -> Stats:
        """Run every aggregate in ``conn``'s transaction, so the figures agree with each other.

        Jobs already purged count through their daily rollups; percentiles are then estimated
        from the rollups' duration histograms (exact while no rollup falls in the window).
        """
        by_status, by_kind, n, total = self._groups(conn)
        rollups = self.rollups(conn)
        for r in rollups:
            by_status[r.status] = by_status.get(r.status, 0) + r.job_count
            by_kind[r.kind] = by_kind.get(r.kind, 0) + r.job_count
            n += r.duration_count
            total += r.duration_sum
        if any(r.duration_count for r in rollups):
            histogram = self._live_histogram(conn)
            for r in rollups:
                histogram = [a + b for a, b in zip(histogram, r.histogram, strict=True)]
            p50, p95 = _from_histogram(histogram, 0.50), _from_histogram(histogram, 0.95)
        else:
            p50, p95 = self._percentiles(conn, n, (0.50, 0.95))
        finished = sum(by_status.get(s, 0) for s in _FINISHED)
        succeeded = by_status.get(Status.SUCCEEDED.value, 0)
        return Stats(
            days=days,
            total_jobs=sum(by_status.values()),
            jobs_by_status=by_status,
            jobs_by_kind=by_kind,
            success_rate=succeeded / finished if finished else None,
            average_duration_seconds=total / n if n else None,
            p50_duration_seconds=p50,
            p95_duration_seconds=p95,
            total_processing_seconds=total,
            active_jobs=self._active(conn),
        )


def _from_histogram(histogram: list[int], fraction: float) -> float | None:
    """Nearest-rank percentile as the upper bound of the bucket holding that rank."""
    n = sum(histogram)
    if n == 0:
        return None
    rank = max(math.ceil(fraction * n), 1)
    seen = 0
    for bound, count in zip([*HISTOGRAM_BOUNDS, HISTOGRAM_BOUNDS[-1]], histogram, strict=True):
        seen += count
        if seen >= rank:
            return float(bound)
    return float(HISTOGRAM_BOUNDS[-1])


def daily_counts(
    conn: Connection, since: datetime, owner: str | None, kind: str | None
) -> dict[str, dict[str, int]]:
    """``{day: {status: count}}`` for jobs created since ``since``, live and purged."""
    c = jobs.c
    if conn.dialect.name == "postgresql":
        day: sa.ColumnElement[Any] = sa.func.to_char(
            sa.func.timezone("UTC", c.created_at), "YYYY-MM-DD"
        )
    else:
        day = sa.func.strftime("%Y-%m-%d", c.created_at)
    live = StatsQuery(since, owner, kind)
    stmt = (
        sa.select(day, c.status, sa.func.count()).where(*live.conditions()).group_by(day, c.status)
    )
    counts: dict[str, dict[str, int]] = {}
    for d, status, n in conn.execute(stmt):
        counts.setdefault(str(d), {})[status] = int(n)
    for r in live.rollups(conn):
        bucket = counts.setdefault(r.day.isoformat(), {})
        bucket[r.status] = bucket.get(r.status, 0) + r.job_count
    return dict(sorted(counts.items()))
