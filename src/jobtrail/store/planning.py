"""PlanningWrites: the store's side of schedules (definitions, slots, audit) and retention."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from jobtrail.jobs import TERMINAL, Status
from jobtrail.store.base import StoreBase
from jobtrail.store.queries import HISTOGRAM_BOUNDS
from jobtrail.store.tables import job_events, job_items, job_rollups, jobs, schedule_runs, schedules

if TYPE_CHECKING:
    from jobtrail.schedules import Schedule, ScheduleRun, ScheduleState


@dataclass(frozen=True)
class RetentionPolicy:
    """Which terminal jobs a purge deletes: by age since completion or since creation."""

    succeeded_before: datetime
    others_before: datetime
    created_before: datetime
    batch_size: int = 1000


class PlanningWrites(StoreBase):
    """Schedules and purges; every write is bounded and safe to run from several processes."""

    # -- schedules ----------------------------------------------------------------------

    def save_schedule(self, schedule: Schedule, first_slot: datetime, now: datetime) -> None:
        """Insert or update a schedule's definition, keeping the slots it already handled."""
        definition = {
            "kind": schedule.kind,
            "cron": schedule.cron,
            "every_seconds": schedule.every,
            "payload": dict(schedule.payload),
            "owner": schedule.owner,
            "updated_at": now,
        }
        insert = self._insert(schedules).values(
            name=schedule.name,
            last_slot_at=first_slot,
            next_run_at=schedule.next_slot(first_slot),
            **definition,
        )
        with self.write() as conn:
            conn.execute(insert.on_conflict_do_update(index_elements=["name"], set_=definition))

    def get_schedule(self, name: str) -> ScheduleState | None:
        """A stored schedule, or None."""
        from jobtrail.schedules import ScheduleState

        with self.read() as conn:
            row = conn.execute(sa.select(schedules).where(schedules.c.name == name)).one_or_none()
        return None if row is None else ScheduleState(**_state(row._mapping))

    def list_schedules(self) -> list[ScheduleState]:
        """Every stored schedule, by name."""
        from jobtrail.schedules import ScheduleState

        with self.read() as conn:
            rows = conn.execute(sa.select(schedules).order_by(schedules.c.name)).all()
        return [ScheduleState(**_state(r._mapping)) for r in rows]

    def advance_schedule(
        self, name: str, last: datetime, latest: datetime, next_run_at: datetime
    ) -> bool:
        """Compare-and-set a schedule's last handled slot; False if another process did it."""
        c = schedules.c
        stmt = (
            schedules.update()
            .where(c.name == name, sa.or_(c.last_slot_at.is_(None), c.last_slot_at == last))
            .values(last_slot_at=latest, next_run_at=next_run_at, updated_at=self.clock())
        )
        with self.write() as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    def record_schedule_runs(self, runs: Sequence[ScheduleRun]) -> None:
        """Append audit records of schedule ticks."""
        if runs:
            with self.write() as conn:
                conn.execute(schedule_runs.insert(), [vars(r) for r in runs])

    def schedule_runs(self, name: str, limit: int = 50) -> list[ScheduleRun]:
        """A schedule's most recent audit records, newest first."""
        from jobtrail.schedules import ScheduleRun

        stmt = (
            sa.select(schedule_runs)
            .where(schedule_runs.c.schedule == name)
            .order_by(schedule_runs.c.id.desc())
            .limit(limit)
        )
        with self.read() as conn:
            rows = conn.execute(stmt).all()
        return [ScheduleRun(**{k: v for k, v in r._mapping.items() if k != "id"}) for r in rows]

    # -- retention ----------------------------------------------------------------------

    def purge(self, policy: RetentionPolicy) -> int:
        """Delete terminal jobs the policy allows, in batches, folding each into the rollups."""
        total = 0
        while True:
            with self.write() as conn:
                if self.dialect == "postgresql":  # one purger at a time, so rollups add up
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7480)"))
                rows = conn.execute(self._purgeable(policy)).all()
                if not rows:
                    return total
                self._fold(conn, rows)
                ids = [r.id for r in rows]
                conn.execute(job_events.delete().where(job_events.c.job_id.in_(ids)))
                conn.execute(job_items.delete().where(job_items.c.job_id.in_(ids)))
                conn.execute(jobs.delete().where(jobs.c.id.in_(ids)))
            total += len(rows)

    @staticmethod
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

    def _fold(self, conn: sa.Connection, rows: Sequence[sa.Row[Any]]) -> None:
        """Add purged jobs to their day's rollup rows (one upsert per group)."""
        groups: dict[tuple[date, str, str, str], list[float | None]] = {}
        for r in rows:
            key = (r.created_at.date(), r.kind, r.owner or "", r.status)
            groups.setdefault(key, []).append(r.duration_seconds)
        for (day, kind, owner, status), durations in groups.items():
            known = [d for d in durations if d is not None]
            histogram = [0] * (len(HISTOGRAM_BOUNDS) + 1)
            for d in known:
                histogram[bisect.bisect_left(HISTOGRAM_BOUNDS, d)] += 1
            self._add_rollup(conn, day, kind, owner, status, len(durations), known, histogram)

    def _add_rollup(
        self,
        conn: sa.Connection,
        day: date,
        kind: str,
        owner: str,
        status: str,
        count: int,
        durations: list[float],
        histogram: list[int],
    ) -> None:
        key = {"day": day, "kind": kind, "owner": owner, "status": status}
        existing = conn.execute(
            sa.select(job_rollups).where(*(job_rollups.c[k] == v for k, v in key.items()))
        ).one_or_none()
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
        merged = [a + b for a, b in zip(existing.histogram, histogram, strict=True)]
        conn.execute(
            job_rollups.update()
            .where(*(job_rollups.c[k] == v for k, v in key.items()))
            .values(
                job_count=existing.job_count + count,
                duration_count=existing.duration_count + len(durations),
                duration_sum=existing.duration_sum + sum(durations),
                histogram=merged,
            )
        )


def _state(row: Any) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "updated_at"}
