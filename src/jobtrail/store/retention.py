"""RetentionStore: purging finished jobs in bounded batches, folding each into daily rollups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from jobtrail.states import TERMINAL, Status
from jobtrail.store.database import Database
from jobtrail.store.gauges import bucket_counts, merged
from jobtrail.store.tables import job_events, job_items, job_labels, job_rollups, jobs

if TYPE_CHECKING:
    from jobtrail.settings import Settings

_PG_PURGE_LOCK = 7480
"""One purger at a time per PostgreSQL database, so concurrent rollups add up."""


class RetainedKind(Protocol):
    """A kind with its own retention ages in days (``JobKind``); None keeps the default."""

    @property
    def name(self) -> str: ...
    @property
    def retain_succeeded(self) -> float | None: ...
    @property
    def retain_failed(self) -> float | None: ...


@dataclass(frozen=True)
class Ages:
    """Retention ages in days: succeeded jobs after completion, the other finished ones after
    completion, and any finished job after creation (the cap)."""

    succeeded: float
    others: float
    cap: float

    def of_kind(
        self, retain_succeeded: float | None, retain_failed: float | None, fixed_cap: bool
    ) -> Ages:
        """These ages with a kind's own (those not None) in their place; the cap rises to the
        longest age unless ``fixed_cap`` (a cap given for this purge is applied as given)."""
        succeeded = self.succeeded if retain_succeeded is None else retain_succeeded
        others = self.others if retain_failed is None else retain_failed
        cap = self.cap if fixed_cap else max(self.cap, succeeded, others)
        return Ages(succeeded, others, cap)

    def cutoffs(self, now: datetime) -> Cutoffs:
        """The moments these ages mean, as of ``now``."""
        return Cutoffs(
            succeeded_before=now - timedelta(days=self.succeeded),
            others_before=now - timedelta(days=self.others),
            created_before=now - timedelta(days=self.cap),
        )


@dataclass(frozen=True)
class Cutoffs:
    """Finished jobs completed (succeeded ones, the others) or created before these go."""

    succeeded_before: datetime
    others_before: datetime
    created_before: datetime

    def condition(self) -> sa.ColumnElement[bool]:
        c = jobs.c
        others = [s.value for s in TERMINAL if s is not Status.SUCCEEDED]
        return sa.or_(
            sa.and_(c.status == Status.SUCCEEDED.value, c.completed_at < self.succeeded_before),
            sa.and_(c.status.in_(others), c.completed_at < self.others_before),
            sa.and_(c.status.in_([s.value for s in TERMINAL]), c.created_at < self.created_before),
        )


@dataclass(frozen=True)
class RetentionPolicy:
    """Which terminal jobs a purge deletes: ``default`` for every kind but those of
    ``kinds``, which have their own."""

    default: Cutoffs
    kinds: Mapping[str, Cutoffs] = field(default_factory=dict)
    batch_size: int = 1000

    @classmethod
    def of(
        cls,
        settings: Settings,
        now: datetime,
        batch_size: int = 1000,
        kinds: Iterable[RetainedKind] = (),
        fixed_cap: bool = False,
    ) -> RetentionPolicy:
        """The policy of ``settings``' retention ages and ``kinds``' own, as of ``now``.

        The cap (``retention_max_days``) never deletes a job younger than a per-status age of
        its kind keeps — it rises to the longest — unless ``fixed_cap`` (the caller gave it).
        """
        ages = Ages(
            settings.retention_succeeded_days,
            settings.retention_other_days,
            settings.retention_max_days,
        )
        own = [k for k in kinds if k.retain_succeeded is not None or k.retain_failed is not None]
        return cls(
            default=ages.of_kind(None, None, fixed_cap).cutoffs(now),
            kinds={
                k.name: ages.of_kind(k.retain_succeeded, k.retain_failed, fixed_cap).cutoffs(now)
                for k in own
            },
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
                for table in (job_events, job_items, job_labels):
                    conn.execute(table.delete().where(table.c.job_id.in_(ids)))
                conn.execute(jobs.delete().where(jobs.c.id.in_(ids)))
            total += len(rows)


def _purgeable(policy: RetentionPolicy) -> sa.Select[Any]:
    c = jobs.c
    own = [sa.and_(c.kind == kind, cutoffs.condition()) for kind, cutoffs in policy.kinds.items()]
    rest = policy.default.condition()
    if policy.kinds:
        rest = sa.and_(c.kind.not_in(list(policy.kinds)), rest)
    return (
        sa.select(c.id, c.kind, c.owner, c.status, c.created_at, c.duration_seconds)
        .where(sa.or_(*own, rest))
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
