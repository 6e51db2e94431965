"""AlertReads: the reads alert conditions are evaluated with — failed, stuck, waiting and queued
jobs of a rule's scope and rescued jobs — each served by an index."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jobtrail.alerts import AlertRule
from jobtrail.states import HELD, Status
from jobtrail.store.database import Database
from jobtrail.store.filters import label_conditions
from jobtrail.store.statements import status_in
from jobtrail.store.summaries import unindexed
from jobtrail.store.tables import job_events, jobs
from jobtrail.store.workers import no_consumer

c = jobs.c
e = job_events.c

_RESCUED = e.type == sa.literal_column("'rescued'")
"""Written out, not bound: a partial index is used only for its own condition's constant."""
LIMIT = 1000
"""Rows one read returns at most (the rest are read at the next evaluation)."""
_SHOWN = (c.id, c.kind, c.owner, c.queue, c.status, c.error_message, c.items_failed)


def in_scope(rule: AlertRule, by_time: bool = False) -> list[sa.ColumnElement[bool]]:
    """The conditions of a job in ``rule``'s scope; ``by_time``: for a read by completion
    time, whose columns SQLite must not pick another index for (a kind's or a status's
    index would read every such job ever kept, not the last seconds')."""
    column = unindexed if by_time else _same
    where: list[sa.ColumnElement[bool]] = []
    for name, value in (("kind", rule.kind), ("queue", rule.queue), ("owner", rule.owner)):
        if value is not None:
            where.append(column(c[name]) == value)
    return where + label_conditions(rule.labels)


def _same(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return column


def _ended(statuses: Collection[Status]) -> sa.ColumnElement[bool]:
    """Jobs in ``statuses``, for a read by completion time (see ``in_scope``)."""
    return unindexed(c.status).in_(sorted(s.value for s in statuses))


class AlertReads:
    """Read-only queries over jobs and events for the alert evaluator."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def _rows(self, stmt: sa.Select[Any]) -> list[Any]:
        with self._db.read() as conn:
            return list(conn.execute(stmt))

    def finished(
        self,
        rule: AlertRule,
        since: datetime,
        statuses: Collection[Status],
        skip: Collection[str] = (),
    ) -> list[Any]:
        """Jobs of the scope that ended in ``statuses`` at or after ``since``, but those of
        ``skip``, oldest first (by ``completed_at``, read on its index)."""
        return self._rows(finished_query(rule, since, statuses, skip))

    def succeeded_after(self, rule: AlertRule, kind: str, after: datetime) -> bool:
        """Whether a job of ``kind`` in the scope succeeded after ``after``."""
        stmt = (
            sa.select(c.id)
            .where(c.completed_at > after, _ended({Status.SUCCEEDED}), unindexed(c.kind) == kind)
            .where(*in_scope(rule, by_time=True))
            .limit(1)
        )
        return bool(self._rows(stmt))

    def outcomes(self, rule: AlertRule, since: datetime) -> dict[str, dict[str, int]]:
        """Jobs of the scope finished since ``since``, counted per kind and status."""
        stmt = (
            sa.select(c.kind, c.status, sa.func.count())
            .where(c.completed_at >= since, *in_scope(rule, by_time=True))
            .group_by(c.kind, c.status)
        )
        counts: dict[str, dict[str, int]] = {}
        for kind, status, count in self._rows(stmt):
            counts.setdefault(kind, {})[status] = int(count)
        return counts

    def latest_failed(self, rule: AlertRule, kind: str, since: datetime, limit: int) -> list[str]:
        """The ids of the scope's jobs of ``kind`` that failed since ``since``, newest last."""
        stmt = (
            sa.select(c.id)
            .where(c.completed_at >= since, _ended({Status.FAILED}), unindexed(c.kind) == kind)
            .where(*in_scope(rule, by_time=True))
            .order_by(c.completed_at.desc())
            .limit(limit)
        )
        return [row.id for row in self._rows(stmt)][::-1]

    def stuck(self, rule: AlertRule, now: datetime) -> list[Any]:
        """Held jobs of the scope that stalled, or run longer than their kind's timeout."""
        maybe = sa.or_(c.stalled.is_(True), c.timeout.is_not(None))
        stmt = (
            sa.select(*_SHOWN, c.stalled, c.timeout, c.started_at)
            .where(status_in(HELD), c.lease.is_not(None), maybe, *in_scope(rule))
            .order_by(c.started_at)
            .limit(LIMIT)
        )
        return [
            row
            for row in self._rows(stmt)
            if row.stalled or _overran(row.started_at, row.timeout, now)
        ]

    def unconsumed(self, rule: AlertRule, due_before: datetime) -> list[Any]:
        """Jobs of the scope parked ``waiting`` because no live worker consumes their queue,
        due before ``due_before``: one row per queue (count, oldest due time, a job id)."""
        where = [
            c.status == Status.WAITING.value,
            c.lease.is_(None),
            c.wait_reason.like(no_consumer("")[:-1] + "%"),
            c.run_after < due_before,
        ]
        return self._per_queue(where, rule)

    def queued_before(self, rule: AlertRule, due_before: datetime) -> list[Any]:
        """Queued jobs of the scope due before ``due_before``: one row per queue."""
        where = [c.status == Status.QUEUED.value, c.run_after < due_before]
        return self._per_queue(where, rule)

    def _per_queue(self, where: list[sa.ColumnElement[bool]], rule: AlertRule) -> list[Any]:
        stmt = (
            sa.select(c.queue, sa.func.count(), sa.func.min(c.run_after), sa.func.min(c.id))
            .where(*where, *in_scope(rule))
            .group_by(c.queue)
            .order_by(c.queue)
        )
        return self._rows(stmt)

    def rescued(self, rule: AlertRule, after_id: int, skip: Collection[int] = ()) -> list[Any]:
        """``rescued`` events after event ``after_id`` (but those of ``skip``) of jobs in the
        scope, oldest first, read on the partial index of rescues."""
        return self._rows(rescued_query(rule, after_id, skip))

    def last_event_id(self) -> int:
        """The newest event's id (where a new rule's reading of events starts)."""
        with self._db.read() as conn:
            return int(conn.execute(sa.select(sa.func.max(e.id))).scalar() or 0)

    def slot_job(self, owner: str | None, key: str) -> Any:
        """The job of a schedule slot (by its key), or None: id, status, started_at."""
        stmt = sa.select(c.id, c.status, c.started_at).where(
            c.key_scope == (owner or ""), c.key == key
        )
        found = self._rows(stmt)
        return found[0] if found else None


def finished_query(
    rule: AlertRule, since: datetime, statuses: Collection[Status], skip: Collection[str] = ()
) -> sa.Select[Any]:
    """The read of ``AlertReads.finished``."""
    unseen = [c.id.not_in(sorted(skip))] if skip else []
    return (
        sa.select(*_SHOWN, c.completed_at)
        .where(c.completed_at >= since, _ended(statuses), *in_scope(rule, by_time=True), *unseen)
        .order_by(c.completed_at, c.id)
        .limit(LIMIT)
    )


def rescued_query(rule: AlertRule, after_id: int, skip: Collection[int] = ()) -> sa.Select[Any]:
    """The read of ``AlertReads.rescued``."""
    unseen = [e.id.not_in(sorted(skip))] if skip else []
    return (
        sa.select(e.id.label("event_id"), e.message, e.at, *_SHOWN)
        .join(jobs, c.id == e.job_id)
        .where(_RESCUED, e.id > after_id, *in_scope(rule, by_time=True), *unseen)
        .order_by(e.id)
        .limit(LIMIT)
    )


def _overran(started_at: datetime | None, timeout: float | None, now: datetime) -> bool:
    return bool(started_at and timeout and started_at + timedelta(seconds=timeout) < now)
