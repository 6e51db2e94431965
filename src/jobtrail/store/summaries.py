"""SummaryStore: finished jobs rolled into per-day and per-minute summaries from a watermark,
so statistics and charts read summaries plus the small tail of jobs finished since."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from jobtrail.jobs import DURATION_BUCKETS
from jobtrail.states import ACTIVE, TERMINAL
from jobtrail.store.database import Database
from jobtrail.store.tables import (
    HISTOGRAM_COLUMNS,
    job_days,
    job_kind_days,
    job_minutes,
    jobs,
    summary_marks,
)

MARK = "finished"
"""The name of the one watermark: every job finished before it is in the summaries."""
ROLL_LAG = timedelta(seconds=5)
"""How far behind now the maintenance rolls: a finish stamped a moment before its commit
lands in the tail, never behind the mark."""
MINUTES_KEPT = timedelta(hours=48)
"""How long per-minute summaries are kept (longer windows read the daily ones)."""
CHUNK = 50_000
"""The most jobs one roll-up transaction folds, so a first roll-up never holds a long lock."""
_TERMINAL = [s.value for s in TERMINAL]
_ACTIVE = [s.value for s in ACTIVE]


@dataclass(frozen=True)
class Rolled:
    """What one ``roll_up`` did: jobs folded, and the new watermark."""

    jobs: int
    rolled_to: datetime


class SummaryStore:
    """Keeps ``job_days`` and ``job_minutes`` up to date from the ``summary_marks`` watermark."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def roll_up(self, lag: timedelta = ROLL_LAG) -> Rolled:
        """Fold every job finished between the watermark and ``now - lag`` into the
        summaries, ``CHUNK`` jobs per transaction; several processes may call it at once
        (the watermark is moved by compare-and-set, first in each transaction)."""
        target = self._db.clock() - lag
        folded = 0
        while True:
            with self._db.write() as conn:
                mark = self._locked_mark(conn)
                upto = min(target, self._chunk_end(conn, mark, target))
                if upto <= mark:
                    return Rolled(folded, mark)
                folded += self._fold(conn, mark, upto)
                conn.execute(
                    summary_marks.update()
                    .where(summary_marks.c.name == MARK)
                    .values(rolled_to=upto)
                )
            if upto >= target:
                return Rolled(folded, upto)

    def _locked_mark(self, conn: Connection) -> datetime:
        """The watermark, locked until this transaction ends (SQLite: by its write lock)."""
        stmt = sa.select(summary_marks.c.rolled_to).where(summary_marks.c.name == MARK)
        if self._db.dialect == "postgresql":
            stmt = stmt.with_for_update()
        found: datetime = conn.execute(stmt).scalar_one()
        return found

    def _chunk_end(self, conn: Connection, mark: datetime, target: datetime) -> datetime:
        """Where a chunk of ``CHUNK`` jobs past ``mark`` ends (read from the completed_at
        index); ``target`` when fewer are left."""
        c = jobs.c
        stmt = (
            sa.select(c.completed_at)
            .where(c.completed_at >= mark, c.completed_at < target)
            .order_by(c.completed_at)
            .offset(CHUNK)
            .limit(1)
        )
        end: datetime | None = conn.execute(stmt).scalar()
        return target if end is None or end <= mark else end

    def _fold(self, conn: Connection, since: datetime, until: datetime) -> int:
        c = jobs.c
        # Read from the completion index only (the status condition must not pick another).
        window = [
            c.completed_at >= since,
            c.completed_at < until,
            unindexed(c.status).in_(_TERMINAL),
        ]
        owner = sa.func.coalesce(c.owner, "")
        day = day_of(self._db.dialect, c.created_at)
        grouped = (day, c.kind, owner, c.status)
        stmt = sa.select(
            *grouped,
            sa.func.count(),
            sa.func.count(c.duration_seconds),
            sa.func.coalesce(sa.func.sum(c.duration_seconds), 0.0),
            *histogram_sums(c.duration_seconds),
        ).where(*window)
        rows = [tuple(r) for r in conn.execute(stmt.group_by(*grouped))]
        values = [day_values(r) for r in rows]
        self._upsert(conn, job_days, values, ["day", "kind", "owner", "status"], _ADDED)
        kinds = summed_over_owners(values)
        self._upsert(conn, job_kind_days, kinds, ["day", "kind", "status"], _ADDED)
        recent = max(since, self._db.clock() - MINUTES_KEPT)
        if until > recent:
            minute = minute_of(self._db.dialect, c.completed_at)
            per = (minute, c.queue, c.kind, owner, c.status)
            stmt = sa.select(*per, sa.func.count()).where(*window, c.completed_at >= recent)
            self._add_minutes(conn, [tuple(r) for r in conn.execute(stmt.group_by(*per))])
        kept_from = self._db.clock() - MINUTES_KEPT
        conn.execute(job_minutes.delete().where(job_minutes.c.minute < kept_from))
        return sum(int(r[4]) for r in rows)

    def _add_minutes(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        names = ["minute", "queue", "kind", "owner", "status"]
        values = [
            {**dict(zip(names, r[:5], strict=True)), "minute": as_utc(r[0]), "job_count": r[5]}
            for r in rows
        ]
        self._upsert(conn, job_minutes, values, names, ["job_count"])

    def _upsert(
        self,
        conn: Connection,
        table: sa.Table,
        values: list[dict[str, Any]],
        keys: list[str],
        added: list[str],
    ) -> None:
        """Insert ``values``, adding their ``added`` columns to a row already there."""
        if not values:
            return
        stmt = self._db.insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=keys,
            set_={name: table.c[name] + getattr(stmt.excluded, name) for name in added},
        )
        for start in range(0, len(values), 500):
            conn.execute(stmt, values[start : start + 500])


_ADDED = ["job_count", "duration_count", "duration_sum", *HISTOGRAM_COLUMNS]
"""The columns of a daily summary that roll-ups add to."""


def day_values(row: Sequence[Any]) -> dict[str, Any]:
    """A ``job_days`` row from ``(day, kind, owner, status, count, timed, sum, *histogram)``."""
    return {
        "day": _as_date(row[0]),
        "kind": row[1],
        "owner": row[2],
        "status": row[3],
        "job_count": int(row[4]),
        "duration_count": int(row[5]),
        "duration_sum": float(row[6]),
        **{name: int(n or 0) for name, n in zip(HISTOGRAM_COLUMNS, row[7:], strict=True)},
    }


def summed_over_owners(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``job_days`` rows added up over their owners: ``job_kind_days`` rows."""
    summed: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (row["day"], row["kind"], row["status"])
        into = summed.setdefault(key, {"day": key[0], "kind": key[1], "status": key[2]})
        for name in _ADDED:
            into[name] = into.get(name, 0) + row[name]
    return list(summed.values())


class Unindexed(sa.sql.expression.ColumnElement[Any]):
    """A column SQLite's planner may not pick an index for (``+column``): a query then reads
    the index its other condition names, e.g. the jobs finished since the watermark by
    completion time rather than the whole window by creation time."""

    inherit_cache = True
    _traverse_internals = (("column", InternalTraversal.dp_clauseelement),)  # type: ignore[assignment]

    def __init__(self, column: sa.ColumnElement[Any]) -> None:
        self.column = column
        self.type = column.type


@compiles(Unindexed)
def _plain(element: Unindexed, compiler: Any, **options: Any) -> str:
    return str(compiler.process(element.column, **options))


@compiles(Unindexed, "sqlite")
def _unary_plus(element: Unindexed, compiler: Any, **options: Any) -> str:
    return "+" + str(compiler.process(element.column, **options))


def unindexed(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """``column``, never read through an index (SQLite; PostgreSQL's planner has statistics)."""
    return Unindexed(column)


def read_mark(conn: Connection) -> datetime:
    """The watermark, read in ``conn``'s transaction."""
    stmt = sa.select(summary_marks.c.rolled_to).where(summary_marks.c.name == MARK)
    found: datetime = conn.execute(stmt).scalar_one()
    return found


def unsummarized(mark: datetime) -> list[sa.ColumnElement[bool]]:
    """Conditions of the jobs the summaries do not hold yet, one per index: the active ones
    (by status) and those finished since ``mark`` (by completion time). Give the rest of a
    query's conditions ``unindexed`` columns, so these pick the index."""
    c = jobs.c
    return [
        c.status.in_(_ACTIVE),
        sa.and_(c.completed_at >= mark, unindexed(c.status).in_(_TERMINAL)),
    ]


def histogram_sums(duration: sa.ColumnElement[Any]) -> list[sa.ColumnElement[Any]]:
    """SQL aggregates: how many durations fall in each histogram bucket."""
    bounds = [None, *DURATION_BUCKETS, None]
    sums: list[sa.ColumnElement[Any]] = []
    for low, high in itertools.pairwise(bounds):
        conditions: list[sa.ColumnElement[bool]] = [duration.is_not(None)]
        if low is not None:
            conditions.append(duration > low)
        if high is not None:
            conditions.append(duration <= high)
        sums.append(sa.func.sum(sa.case((sa.and_(*conditions), 1), else_=0)))
    return sums


def day_of(dialect: str, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The UTC day of a timestamp column, in SQL."""
    if dialect == "postgresql":
        return sa.cast(sa.func.timezone("UTC", column), sa.Date)
    return sa.func.date(column)


def minute_of(dialect: str, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The UTC minute a timestamp column falls in, in SQL."""
    if dialect == "postgresql":
        return sa.func.date_trunc("minute", sa.func.timezone("UTC", column))
    return sa.func.strftime("%Y-%m-%d %H:%M:00", column)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def as_utc(value: datetime | str) -> datetime:
    """A timestamp read from either dialect (SQLite's text, PostgreSQL's naive UTC) as aware
    UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
