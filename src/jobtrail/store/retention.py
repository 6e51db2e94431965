"""RetentionStore: purging finished jobs in bounded batches, folding each into daily rollups."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from jobtrail.jobs import TERMINAL, Status
from jobtrail.store.database import Database
from jobtrail.store.stats import bucket_counts, merged
from jobtrail.store.tables import job_events, job_items, job_rollups, jobs

if TYPE_CHECKING:
    from jobtrail.settings import Settings

_PG_PURGE_LOCK = 7480
"""One purger at a time per PostgreSQL database, so concurrent rollups add up."""


@dataclass(frozen=True)
class RetentionPolicy:
    """Which terminal jobs a purge deletes: by age since completion or since creation."""

    succeeded_before: datetime
    others_before: datetime
    created_before: datetime
    batch_size: int = 1000

    @classmethod
    def of(cls, settings: Settings, now: datetime, batch_size: int = 1000) -> RetentionPolicy:
        """The policy of ``settings``' retention ages, as of ``now``."""
        return cls(
            succeeded_before=now - timedelta(days=settings.retention_succeeded_days),
            others_before=now - timedelta(days=settings.retention_other_days),
            created_before=now - timedelta(days=settings.retention_max_days),
            batch_size=batch_size,
        )


class RetentionStore:
    """Deletes what the retention policy allows; safe to run from several processes at once."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def purge(self, policy: RetentionPolicy) -> int:
        """Delete terminal jobs the policy allows, in batches, folding each into the rollups."""
        total = 0
        while True:
            with self._db.write() as conn:
                if self._db.dialect == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_PURGE_LOCK})
                rows = conn.execute(_purgeable(policy)).all()
                if not rows:
                    return total
                _fold(conn, rows)
                ids = [r.id for r in rows]
                conn.execute(job_events.delete().where(job_events.c.job_id.in_(ids)))
                conn.execute(job_items.delete().where(job_items.c.job_id.in_(ids)))
                conn.execute(jobs.delete().where(jobs.c.id.in_(ids)))
            total += len(rows)


def _purgeable(policy: RetentionPolicy) -> sa.Select[Any]:
    c = jobs.c
    others = [s.value for s in TERMINAL if s is not Status.SUCCEEDED]
    return (
        sa.select(c.id, c.kind, c.owner, c.status, c.created_at, c.duration_seconds)
        .where(
            sa.or_(
                sa.and_(
                    c.status == Status.SUCCEEDED.value, c.completed_at < policy.succeeded_before
                ),
                sa.and_(c.status.in_(others), c.completed_at < policy.others_before),
                sa.and_(
                    c.status.in_([s.value for s in TERMINAL]),
                    c.created_at < policy.created_before,
                ),
            )
        )
        .limit(policy.batch_size)
    )


def _fold(conn: sa.Connection, rows: Sequence[sa.Row[Any]]) -> None:
    """Add purged jobs to their day's rollup rows (one write per day × kind × owner × status)."""
    groups: dict[tuple[date, str, str, str], list[float | None]] = {}
    for r in rows:
        key = (r.created_at.date(), r.kind, r.owner or "", r.status)
        groups.setdefault(key, []).append(r.duration_seconds)
    for (day, kind, owner, status), durations in groups.items():
        known = [d for d in durations if d is not None]
        rollup = {"day": day, "kind": kind, "owner": owner, "status": status}
        _add_rollup(conn, rollup, len(durations), known)


def _add_rollup(
    conn: sa.Connection, key: dict[str, Any], count: int, durations: list[float]
) -> None:
    where = [job_rollups.c[k] == v for k, v in key.items()]
    histogram = bucket_counts(durations)
    existing = conn.execute(sa.select(job_rollups).where(*where)).one_or_none()
    if existing is None:
        conn.execute(
            job_rollups.insert().values(
                **key,
                job_count=count,
                duration_count=len(durations),
                duration_sum=sum(durations),
                histogram=histogram,
            )
        )
        return
    conn.execute(
        job_rollups.update()
        .where(*where)
        .values(
            job_count=existing.job_count + count,
            duration_count=existing.duration_count + len(durations),
            duration_sum=existing.duration_sum + sum(durations),
            histogram=merged(existing.histogram, histogram),
        )
    )
