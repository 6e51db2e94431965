"""The statements on the hot paths — status reads, claims, flushes, finishes — prepared once."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from jobtrail.jobs import TERMINAL, Status, sources_of
from jobtrail.store.prepared import Prepared, RawSession, param
from jobtrail.store.records import NewEvent, NewFailedItem, Progress
from jobtrail.store.rows import JOB_COLUMNS
from jobtrail.store.tables import job_events, job_items, jobs, tokens

c = jobs.c
HELD_VALUES = (Status.RUNNING.value, Status.WAITING.value)
PROGRESS_COLUMNS: tuple[str, ...] = (
    "progress",
    "message",
    "items_total",
    "items_done",
    "items_succeeded",
    "items_failed",
    "progress_data",
)


def _status_in(values: Collection[str]) -> sa.ColumnElement[bool]:
    # Constants as separate parameters, so the prepared statement needs no expanding IN.
    return sa.or_(*(c.status == v for v in sorted(values)))


def _progress_values(now: sa.BindParameter[Any]) -> dict[str, Any]:
    values: dict[str, Any] = {name: param(c[name]) for name in PROGRESS_COLUMNS}
    # A flush that moved progress clears the stalled flag; one that did not leaves it.
    values["stalled"] = sa.case((param(c.stalled, "moved"), sa.false()), else_=c.stalled)
    values["updated_at"] = now
    return values


def progress_params(progress: Progress) -> dict[str, Any]:
    """The parameters of a progress snapshot for the prepared statements."""
    values = progress.columns()
    values.pop("stalled", None)
    values["moved"] = progress.moved
    return values


class HotStatements:
    """Prepared statements for one dialect (a store builds them once)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        now = param(c.updated_at, "now")
        # Heartbeats use the database clock on PostgreSQL: skew between hosts cannot rescue.
        self.beat_now: Any = sa.func.now() if dialect.name == "postgresql" else now
        key = (c.id == param(c.id), c.lease == param(c.lease))
        self.get = Prepared(
            sa.select(*JOB_COLUMNS).where(c.id == param(c.id)), dialect, JOB_COLUMNS
        )
        self.flush = Prepared(
            jobs.update()
            .where(*key, _status_in(HELD_VALUES))
            .values(**_progress_values(now), heartbeat_at=self.beat_now)
            .returning(c.cancel_requested),
            dialect,
            [c.cancel_requested],
        )
        self.finish = {
            status: Prepared(
                jobs.update()
                .where(*key, _status_in({s.value for s in sources_of(status)} & set(HELD_VALUES)))
                .values(
                    **_progress_values(now),
                    status=status.value,
                    result=param(c.result),
                    error_message=param(c.error_message),
                    error_details=param(c.error_details),
                    completed_at=now,
                    duration_seconds=param(c.duration_seconds),
                ),
                dialect,
            )
            for status in TERMINAL
        }
        self.event = Prepared(
            job_events.insert().values(
                {col: param(col) for col in job_events.c if col.name != "id"}
            ),
            dialect,
        )
        self.item = Prepared(
            job_items.insert().values({col: param(col) for col in job_items.c if col.name != "id"}),
            dialect,
        )
        self.token = Prepared(
            sa.select(
                tokens.c.name, tokens.c.owner, tokens.c.created_at, tokens.c.revoked_at
            ).where(
                tokens.c.token_hash == param(tokens.c.token_hash), tokens.c.revoked_at.is_(None)
            ),
            dialect,
            [tokens.c.name, tokens.c.owner, tokens.c.created_at, tokens.c.revoked_at],
        )
        self.forget_items = Prepared(
            job_items.delete().where(job_items.c.job_id == param(job_items.c.job_id)), dialect
        )
        self._claims: dict[tuple[int, int], Prepared] = {}

    def claim(self, kinds: int, queues: int) -> Prepared:
        """The claim statement for ``kinds`` kind names and ``queues`` queue names (0: any)."""
        shape = (kinds, queues)
        if shape not in self._claims:
            self._claims[shape] = self._build_claim(kinds, queues)
        return self._claims[shape]

    def _build_claim(self, kinds: int, queues: int) -> Prepared:
        now = param(c.updated_at, "now")
        due = [
            c.status == Status.QUEUED.value,
            c.run_after <= now,
            sa.or_(*(c.kind == param(c.kind, f"kind_{i}") for i in range(kinds))),
        ]
        if queues:
            due.append(sa.or_(*(c.queue == param(c.queue, f"queue_{i}") for i in range(queues))))
        pick = (
            sa.select(c.id)
            .where(*due)
            .order_by(c.priority.desc(), c.run_after)
            .limit(sa.bindparam("limit", type_=sa.Integer()))
        )
        if self.dialect.name == "postgresql":
            # Lock the picked rows once in a materialized CTE: as ``IN (subquery)`` the
            # planner may re-run the LIMITed subquery per row and claim more than asked.
            picked = pick.with_for_update(skip_locked=True).cte("picked")
            picked = picked.prefix_with("MATERIALIZED")
            # The locked rows were re-checked as queued under the lock, so the join needs
            # only the primary key (an extra status filter misleads the planner).
            chosen: sa.ColumnElement[bool] = c.id == picked.c.id
        else:
            chosen = sa.and_(c.id.in_(pick.scalar_subquery()), c.status == Status.QUEUED.value)
        stmt = (
            jobs.update()
            .where(chosen)
            .values(
                status=Status.RUNNING.value,
                attempt=c.attempt + 1,
                started_at=now,
                heartbeat_at=self.beat_now,
                updated_at=now,
                worker=param(c.worker),
                lease=param(c.lease),
                cancel_requested=False,
                stalled=False,
                progress=0.0,
                message=None,
                items_done=None,
                items_succeeded=None,
                items_failed=None,
            )
            .returning(*JOB_COLUMNS)
        )
        return Prepared(stmt, self.dialect, JOB_COLUMNS)

    def append(
        self,
        session: RawSession,
        at: datetime,
        events: Collection[tuple[str, NewEvent]] = (),
        items: Collection[tuple[str, NewFailedItem]] = (),
    ) -> None:
        """Insert events and failed items of any jobs, one batch each."""
        session.execute_many(self.event, [e.row(job_id, at) for job_id, e in events])
        session.execute_many(self.item, [i.row(job_id, at) for job_id, i in items])
