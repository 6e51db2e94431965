"""ScheduleStore: schedule definitions, the compare-and-set of their slots, and their audit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jobtrail.jobs import JSON, ScheduleInfo, ScheduleRun
from jobtrail.store.database import Database
from jobtrail.store.tables import schedule_runs, schedules

_INFO_COLUMNS = [
    schedules.c[name] for name in ScheduleInfo.__dataclass_fields__ if name != "recent_runs"
]
_RUN_COLUMNS = [schedule_runs.c[name] for name in ScheduleRun.__dataclass_fields__]


class ScheduleStore:
    """Schedules shared by every process on the store; each write is safe to race."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def save(
        self,
        name: str,
        kind: str,
        *,
        cron: str | None,
        every_seconds: float | None,
        payload: Mapping[str, JSON],
        owner: str | None,
        first_slot: datetime,
        next_run_at: datetime,
    ) -> None:
        """Insert or update a schedule's definition, keeping the slots it already handled."""
        definition = {
            "kind": kind,
            "cron": cron,
            "every_seconds": every_seconds,
            "payload": dict(payload),
            "owner": owner,
            "updated_at": self._db.clock(),
        }
        insert = self._db.insert(schedules).values(
            name=name, last_slot_at=first_slot, next_run_at=next_run_at, **definition
        )
        with self._db.write() as conn:
            conn.execute(insert.on_conflict_do_update(index_elements=["name"], set_=definition))

    def get(self, name: str) -> ScheduleInfo | None:
        """A stored schedule, or None."""
        stmt = sa.select(*_INFO_COLUMNS).where(schedules.c.name == name)
        with self._db.read() as conn:
            row = conn.execute(stmt).one_or_none()
        return None if row is None else ScheduleInfo(**row._mapping)

    def list_all(self, owner: str | None = None, recent: int = 0) -> list[ScheduleInfo]:
        """Stored schedules by name (only ``owner``'s when given), each with its ``recent``
        last audited slots, newest first."""
        stmt = sa.select(*_INFO_COLUMNS).order_by(schedules.c.name)
        if owner is not None:
            stmt = stmt.where(schedules.c.owner == owner)
        with self._db.read() as conn:
            rows = conn.execute(stmt).all()
            return [
                ScheduleInfo(**r._mapping, recent_runs=self._runs(conn, r.name, recent))
                for r in rows
            ]

    def advance(self, name: str, last: datetime, latest: datetime, next_run_at: datetime) -> bool:
        """Compare-and-set a schedule's last handled slot; False if another process did it."""
        c = schedules.c
        stmt = (
            schedules.update()
            .where(c.name == name, sa.or_(c.last_slot_at.is_(None), c.last_slot_at == last))
            .values(last_slot_at=latest, next_run_at=next_run_at, updated_at=self._db.clock())
        )
        with self._db.write() as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    def record_runs(self, runs: Sequence[ScheduleRun]) -> None:
        """Append audit records of schedule ticks."""
        if runs:
            with self._db.write() as conn:
                conn.execute(schedule_runs.insert(), [_run_row(r) for r in runs])

    def runs(self, name: str, limit: int = 50) -> list[ScheduleRun]:
        """A schedule's most recent audit records, newest first."""
        with self._db.read() as conn:
            return self._runs(conn, name, limit)

    @staticmethod
    def _runs(conn: sa.Connection, name: str, limit: int) -> list[ScheduleRun]:
        if limit <= 0:
            return []
        stmt = (
            sa.select(*_RUN_COLUMNS)
            .where(schedule_runs.c.schedule == name)
            .order_by(schedule_runs.c.id.desc())
            .limit(limit)
        )
        return [ScheduleRun(**r._mapping) for r in conn.execute(stmt)]


def _run_row(run: ScheduleRun) -> dict[str, Any]:
    return {name: getattr(run, name) for name in ScheduleRun.__dataclass_fields__}
