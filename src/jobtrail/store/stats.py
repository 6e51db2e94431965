"""StatsStore: statistics, the daily timeline and metric gauges (``gauges.py``), each read in one
transaction; statistics and the timeline read the summaries (``summaries.py``) plus the jobs not
in them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobtrail.jobs import DURATION_BUCKETS, JSON, Stats
from jobtrail.states import ACTIVE, Status
from jobtrail.store.database import Database
from jobtrail.store.filters import label_conditions
from jobtrail.store.gauges import Snapshot, merged, snapshot
from jobtrail.store.summaries import (
    day_of,
    histogram_sums,
    read_mark,
    unindexed,
    unsummarized,
)
from jobtrail.store.tables import HISTOGRAM_COLUMNS, job_days, job_kind_days, job_labels, jobs

MAX_GROUPS = 50
"""The most groups ``stats(group_by=…)`` reports, the largest first."""
_FINISHED = [Status.SUCCEEDED.value, Status.PARTIAL.value, Status.FAILED.value]
Column = Callable[[sa.ColumnElement[Any]], sa.ColumnElement[Any]]
"""How a query's condition takes its column: as it is, or ``unindexed``."""
EXACT_PERCENTILES_UP_TO = 2000
"""Up to this many durations in a window, percentiles are exact (read from the jobs)."""


def _itself(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return column


class StatsStore:
    """Figures over many jobs, computed in SQL from the summaries and the jobs not in them."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def summary(
        self,
        days: int = 30,
        owner: str | None = None,
        kind: str | None = None,
        labels: Mapping[str, JSON] | None = None,
        group_by: str | None = None,
    ) -> Stats:
        """Aggregates over the jobs created in the last ``days`` days (with ``labels``: having
        them); with ``group_by`` (``kind``, ``owner`` or ``label:KEY``) also per group."""
        grouping = None if group_by is None else parse_group_by(group_by)
        query = StatsQuery(window_start(self._db.clock(), days), owner, kind, dict(labels or {}))
        with self._db.read() as conn:
            mark = read_mark(conn)
            stats = query.run(conn, days, mark)
            if grouping is None:
                return stats
            groups = {
                value: query.narrowed(grouping, value).run(conn, days, mark)
                for value in query.group_values(conn, grouping, mark)
            }
        return replace(stats, groups=groups)

    def timeline(
        self, days: int, owner: str | None = None, kind: str | None = None
    ) -> dict[str, dict[str, int]]:
        """Jobs created per day (``YYYY-MM-DD``) and status over the last ``days`` days,
        including jobs already purged."""
        since = window_start(self._db.clock(), days)
        with self._db.read() as conn:
            return daily_counts(conn, since, owner, kind)

    def gauges(self) -> Snapshot:
        """Every metric figure, read in one transaction."""
        with self._db.read() as conn:
            return snapshot(conn, self._db.clock())


def window_start(now: datetime, days: int) -> datetime:
    """The start of a ``days``-day statistics window: UTC midnight, ``days - 1`` days ago.

    Whole days, so live jobs and the daily rollups of purged ones share one boundary.
    """
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=days - 1)


def parse_group_by(group_by: str) -> tuple[str, str | None]:
    """``("kind"|"owner", None)`` or ``("label", KEY)`` for a ``group_by``; ``ValueError``
    for anything else."""
    if group_by in ("kind", "owner"):
        return group_by, None
    if group_by.startswith("label:") and len(group_by) > len("label:"):
        return "label", group_by.removeprefix("label:")
    raise ValueError(f"group_by must be 'kind', 'owner' or 'label:KEY', not {group_by!r}")


@dataclass(frozen=True)
class StatsQuery:
    """Statistics over jobs created since ``since``, optionally for one owner ("": the
    unowned jobs) or kind, and having ``labels``."""

    since: datetime
    owner: str | None
    kind: str | None
    labels: Mapping[str, JSON] = field(default_factory=dict)

    def filters(self, column: Column = _itself) -> list[sa.ColumnElement[bool]]:
        """The owner, kind and label conditions, without the window (on each ``column(…)``:
        ``unindexed`` ones leave the choice of index to another condition)."""
        conditions: list[sa.ColumnElement[bool]] = []
        if self.owner == "":
            conditions.append(column(jobs.c.owner).is_(None))
        elif self.owner is not None:
            conditions.append(column(jobs.c.owner) == self.owner)
        if self.kind is not None:
            conditions.append(column(jobs.c.kind) == self.kind)
        conditions += label_conditions(self.labels)
        return conditions

    def conditions(self, column: Column = _itself) -> list[sa.ColumnElement[bool]]:
        return [column(jobs.c.created_at) >= self.since, *self.filters(column)]

    def unsummarized(self, mark: datetime) -> list[list[sa.ColumnElement[bool]]]:
        """The conditions of the live jobs the summaries do not hold, one list per index."""
        return [[part, *self.conditions(unindexed)] for part in unsummarized(mark)]

    def day_table(self) -> sa.Table:
        """The daily summaries to read: per owner for one owner, else every owner's sum."""
        return job_kind_days if self.owner is None else job_days

    def narrowed(self, grouping: tuple[str, str | None], value: str) -> StatsQuery:
        """This query limited to one group's ``value``."""
        what, key = grouping
        if what == "label":
            return replace(self, labels={**self.labels, str(key): value})
        return replace(self, kind=value) if what == "kind" else replace(self, owner=value)

    def group_values(
        self, conn: Connection, grouping: tuple[str, str | None], mark: datetime
    ) -> list[str]:
        """The ``MAX_GROUPS`` values of ``grouping`` with the most jobs in the window (kinds and
        owners from the summaries and the jobs not in them; labels from the live jobs)."""
        what, key = grouping
        counts: dict[str, int] = {}
        if what == "label":
            v = job_labels.c.value
            stmt = sa.select(v, sa.func.count()).join(jobs, jobs.c.id == job_labels.c.job_id)
            statements = [stmt.where(job_labels.c.key == key, *self.conditions()).group_by(v)]
        else:
            owner = sa.func.coalesce(jobs.c.owner, "")
            column = unindexed(jobs.c.kind) if what == "kind" else owner
            table = self.day_table() if what == "kind" else job_days
            summed = table.c[what]
            statements = [
                sa.select(summed, sa.func.sum(table.c.job_count))
                .where(*self.day_conditions(table))
                .group_by(summed)
            ]
            statements += [
                sa.select(column, sa.func.count()).where(*live).group_by(column)
                for live in self.unsummarized(mark)
            ]
        for stmt in statements:
            for value, n in conn.execute(stmt):
                counts[str(value)] = counts.get(str(value), 0) + int(n)
        return sorted(counts, key=lambda name: (-counts[name], name))[:MAX_GROUPS]

    def _live_tally(self, conn: Connection) -> Tally:
        """Counts by status and kind, and the count and sum of durations, of the live jobs
        (for label filters, which the summaries do not keep).

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
        return Tally(counts[0], counts[1], int(timed), float(total or 0.0), None)

    def _summed_tally(self, conn: Connection, mark: datetime) -> Tally:
        """The same figures from the daily summaries plus the jobs they do not hold yet (active,
        or finished since the watermark): a few hundred rows at any number of jobs."""
        tally = Tally({}, {}, 0, 0.0, [0] * len(HISTOGRAM_COLUMNS))
        table = self.day_table()
        d = table.c
        figures = (
            sa.func.sum(d.job_count),
            sa.func.sum(d.duration_count),
            sa.func.sum(d.duration_sum),
            *(sa.func.sum(d[name]) for name in HISTOGRAM_COLUMNS),
        )
        stmt = sa.select(d.status, d.kind, *figures).where(*self.day_conditions(table))
        for row in conn.execute(stmt.group_by(d.status, d.kind)):
            tally.add(row)
        c = jobs.c
        live = (
            sa.func.count(),
            sa.func.count(c.duration_seconds),
            sa.func.coalesce(sa.func.sum(c.duration_seconds), 0.0),
            *histogram_sums(c.duration_seconds),
        )
        # Grouped by unindexed columns: ordered by an index on status, the planner would scan
        # it rather than read the few rows the conditions' index holds.
        status, kind = unindexed(c.status), unindexed(c.kind)
        for conditions in self.unsummarized(mark):
            stmt = sa.select(status, kind, *live).where(*conditions)
            for row in conn.execute(stmt.group_by(status, kind)):
                tally.add(row)
        return tally

    def day_conditions(self, table: sa.Table) -> list[sa.ColumnElement[bool]]:
        """The window, owner and kind as conditions on daily summaries (``job_days`` or, without
        an owner, ``job_kind_days``)."""
        d = table.c
        conditions: list[sa.ColumnElement[bool]] = [d.day >= self.since.date()]
        if self.owner is not None:
            conditions.append(d.owner == self.owner)
        if self.kind is not None:
            conditions.append(d.kind == self.kind)
        return conditions

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

    def _exact(self, conn: Connection, tally: Tally) -> bool:
        """Whether exact percentiles can be read from the live rows: few enough durations, and
        none of them purged already."""
        if tally.histogram is None:
            return True
        if tally.timed > EXACT_PERCENTILES_UP_TO:
            return False
        stmt = sa.select(sa.func.count(jobs.c.duration_seconds)).where(*self.conditions())
        return int(conn.execute(stmt).scalar_one()) == tally.timed

    def _active(self, conn: Connection) -> int:
        conditions = [jobs.c.status.in_([s.value for s in ACTIVE]), *self.filters(unindexed)]
        stmt = sa.select(sa.func.count()).select_from(jobs).where(*conditions)
        return int(conn.execute(stmt).scalar_one())

    def run(self, conn: Connection, days: int, mark: datetime) -> Stats:
        """Run every aggregate in ``conn``'s transaction, so the figures agree with each other.

        Finished jobs count through the summaries up to the watermark ``mark`` (purged jobs
        too); percentiles are exact while at most ``EXACT_PERCENTILES_UP_TO`` durations, none
        purged, fall in the window, and estimated from the summaries' histograms after.
        """
        tally = self._live_tally(conn) if self.labels else self._summed_tally(conn, mark)
        n, total, by_status = tally.timed, tally.total, tally.by_status
        if self._exact(conn, tally):
            p50, p95 = self._percentiles(conn, n, (0.50, 0.95))
        else:
            histogram = tally.histogram or []
            p50, p95 = _from_histogram(histogram, 0.50), _from_histogram(histogram, 0.95)
        finished = sum(by_status.get(s, 0) for s in _FINISHED)
        succeeded = by_status.get(Status.SUCCEEDED.value, 0)
        return Stats(
            days=days,
            total_jobs=sum(by_status.values()),
            jobs_by_status=by_status,
            jobs_by_kind=tally.by_kind,
            success_rate=succeeded / finished if finished else None,
            average_duration_seconds=total / n if n else None,
            p50_duration_seconds=p50,
            p95_duration_seconds=p95,
            total_processing_seconds=total,
            active_jobs=self._active(conn),
        )


@dataclass
class Tally:
    """Counts by status and kind and the durations of a window, added up from summaries and
    live rows; ``histogram`` is None when only live rows were counted (exact percentiles)."""

    by_status: dict[str, int]
    by_kind: dict[str, int]
    timed: int
    total: float
    histogram: list[int] | None

    def add(self, row: Sequence[Any]) -> None:
        """Add one ``(status, kind, count, timed, duration sum, *histogram)`` row."""
        status, kind, count, timed, total, *histogram = row
        self.by_status[status] = self.by_status.get(status, 0) + int(count or 0)
        self.by_kind[kind] = self.by_kind.get(kind, 0) + int(count or 0)
        self.timed += int(timed or 0)
        self.total += float(total or 0.0)
        if self.histogram is not None:
            self.histogram = merged(self.histogram, [int(h or 0) for h in histogram])


def _from_histogram(histogram: list[int], fraction: float) -> float | None:
    """Nearest-rank percentile as the upper bound of the bucket holding that rank."""
    n = sum(histogram)
    if n == 0:
        return None
    rank = max(math.ceil(fraction * n), 1)
    seen = 0
    for bound, count in zip([*DURATION_BUCKETS, DURATION_BUCKETS[-1]], histogram, strict=True):
        seen += count
        if seen >= rank:
            return float(bound)
    return float(DURATION_BUCKETS[-1])


def daily_counts(
    conn: Connection, since: datetime, owner: str | None, kind: str | None
) -> dict[str, dict[str, int]]:
    """``{day: {status: count}}`` for jobs created since ``since``, live and purged."""
    query = StatsQuery(since, owner, kind)
    table = query.day_table()
    d = table.c
    statements = [
        sa.select(d.day, d.status, sa.func.sum(d.job_count))
        .where(*query.day_conditions(table))
        .group_by(d.day, d.status)
    ]
    day, status = day_of(conn.dialect.name, jobs.c.created_at), unindexed(jobs.c.status)
    statements += [
        sa.select(day, status, sa.func.count()).where(*live).group_by(day, status)
        for live in query.unsummarized(read_mark(conn))
    ]
    counts: dict[str, dict[str, int]] = {}
    for stmt in statements:
        for when, status, n in conn.execute(stmt):
            bucket = counts.setdefault(str(when)[:10], {})
            bucket[status] = bucket.get(status, 0) + int(n)
    return dict(sorted(counts.items()))
