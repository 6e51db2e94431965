"""JobStore: creating jobs, changing them from outside their runner, and reading them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobtrail import journal
from jobtrail.exceptions import IllegalTransition, ItemsNotListed, JobNotFound, ReportRefused
from jobtrail.filters import Filters
from jobtrail.jobs import Event, Job, NewEvent, NewFailedItem, NewJob, Page
from jobtrail.states import RETRYABLE, EventType, Status, can_transition, sources_of
from jobtrail.store.database import Database
from jobtrail.store.filters import listing_conditions
from jobtrail.store.items import list_items
from jobtrail.store.reports import counted
from jobtrail.store.rows import (
    JOB_COLUMNS,
    append_events,
    append_labels,
    event_from_row,
    job_from_row,
    key_scope,
    label_rows,
    new_row,
)
from jobtrail.store.statements import Statements
from jobtrail.store.tables import job_events, job_items, jobs


class JobStore:
    """Job records: inserted, read, and changed by callers (API, CLI, other engines).

    Every status change is a compare-and-set whose source states come from ``TRANSITIONS``
    (``UPDATE … WHERE id = :id AND status IN (:allowed)``), so a late writer cannot move a
    terminal job or overwrite what a canceller or rescuer decided.
    """

    def __init__(self, database: Database, statements: Statements) -> None:
        self._db = database
        self._statements = statements

    # -- creating -------------------------------------------------------------------------

    def add(self, new_jobs: Sequence[NewJob], actor: str | None = None) -> list[Job]:
        """Insert jobs in one transaction; a job whose ``key`` exists (among its owner's jobs:
        keys are unique per owner) yields the existing job."""
        return [job for job, _created in self.add_or_get(new_jobs, actor)]

    def add_or_get(
        self, new_jobs: Sequence[NewJob], actor: str | None = None
    ) -> list[tuple[Job, bool]]:
        """Like ``add``, telling for each job whether it was created (False: its key existed)."""
        now = self._db.clock()
        rows = [new_row(n, now) for n in new_jobs]
        statements = self._statements
        existing: dict[str, Job] = {}
        with self._db.raw(write=True) as session:
            keyed = [r for r in rows if r["key"] is not None]
            session.execute_many(statements.insert_jobs, [r for r in rows if r["key"] is None])
            for row in keyed:
                if not session.execute(statements.insert_keyed_job, row):
                    found = session.execute(statements.by_key, row)
                    existing[row["id"]] = job_from_row(found[0], now)
            fresh = [r for r in rows if r["id"] not in existing]
            session.execute_many(
                statements.label, [lr for r in fresh for lr in label_rows(r["id"], r["labels"])]
            )
            events = [(r["id"], NewEvent(EventType.CREATED, actor=actor)) for r in fresh]
            events += [
                (r["id"], NewEvent(EventType.STARTED, actor=actor))
                for r in fresh
                if r["attempt"] == 1
            ]
            statements.append(session, now, events)
        if fresh:
            self._db.doorbell.ring()
        journal.created(fresh)
        return [
            (existing[r["id"]], False) if r["id"] in existing else (job_from_row(r, now), True)
            for r in rows
        ]

    # -- changing -------------------------------------------------------------------------

    def transition(
        self,
        job_id: str,
        target: Status,
        *,
        from_: Iterable[Status] | None = None,
        values: dict[str, Any] | None = None,
        events: Sequence[NewEvent] = (),
        conn: Connection | None = None,
    ) -> Job:
        """Move a job to ``target`` if the state machine allows it from its current state.

        ``from_`` narrows the allowed source states further. Raises ``JobNotFound`` or
        ``IllegalTransition``; never changes a job that is not in an allowed state.
        """
        allowed = sources_of(target) if from_ is None else sources_of(target) & set(from_)
        if conn is None:
            with self._db.write() as own:
                return self.transition(
                    job_id, target, from_=allowed, values=values, events=events, conn=own
                )
        now = self._db.clock()
        extra = dict(values or {})
        if target.terminal:
            extra.setdefault("completed_at", now)
        stmt = (
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.status.in_([s.value for s in allowed]))
            .values(status=target.value, updated_at=now, **extra)
            .returning(*JOB_COLUMNS)
        )
        row = conn.execute(stmt).one_or_none()
        if row is None:
            raise IllegalTransition(job_id, self._get(conn, job_id).status, target)
        append_events(conn, now, [(job_id, e) for e in events])
        moved = job_from_row(row._mapping, now)
        self._db.after_commit(conn, lambda: journal.job_changed(journal.state_of(target), moved))
        return moved

    def cancel(self, job_id: str, actor: str | None = None) -> Job:
        """Cancel a job: queued or waiting ones at once, running ones at their next checkpoint."""
        with self._db.write() as conn:
            job = self._get(conn, job_id)
            if job.status is not Status.RUNNING:
                event = NewEvent(EventType.CANCELLED, "cancelled before it ran", actor=actor)
                return self.transition(
                    job_id,
                    Status.CANCELLED,
                    from_=sources_of(Status.CANCELLED) - {Status.RUNNING},
                    events=[event],
                    conn=conn,
                )
            if job.cancel_requested:
                return job
            event = NewEvent(EventType.CANCEL_REQUESTED, actor=actor)
            return self._update_in_place(conn, job, {"cancel_requested": True}, [event])

    def report(
        self,
        job_id: str,
        values: dict[str, Any],
        target: Status | None = None,
        actor: str | None = None,
        items: Sequence[NewFailedItem] = (),
        max_items: int | None = None,
    ) -> Job:
        """Apply progress and/or a status change reported for a job that runs elsewhere.

        Increments (``advance``, ``succeeded_delta``, ``failed_delta``) add to the stored
        counts in SQL; ``items`` are failed items to record, each counted into
        ``items_failed`` and listed while the job lists fewer than ``max_items`` (None: no
        bound). Raises ``IllegalTransition`` for a terminal job or a change the
        state machine forbids, ``ReportRefused`` (an ``IllegalTransition``) for a job jobtrail
        runs itself or one a runner holds right now, ``InvalidData`` for item counts that add
        up past the total.
        """
        with self._db.write() as conn:
            job = self._reportable(conn, job_id, target)
            moving = target is not None and target != job.status
            now = self._db.clock()
            events: list[NewEvent] = []
            if items:
                values = values | {"failed_delta": values.get("failed_delta", 0) + len(items)}
                events = list_items(conn, job_id, now, items, max_items, actor)
            values = counted(_known(values), job) | {"heartbeat_at": now}
            message = values.get("message")
            if message is not None and message != job.message:
                events.append(NewEvent(EventType.PROGRESS, message, actor=actor))
            if target is None or not moving:
                return self._update_in_place(conn, job, values, events)
            if target is Status.RUNNING and job.started_at is None:
                values["started_at"] = now
            if target.terminal and job.started_at is not None:
                values["duration_seconds"] = (now - job.started_at).total_seconds()
            events.append(_status_event(target, values.get("error_message"), actor))
            return self.transition(
                job_id, target, from_=[job.status], values=values, events=events, conn=conn
            )

    def _reportable(self, conn: Connection, job_id: str, target: Status | None) -> Job:
        """The job a report is for, locked until the report is written, if it takes one."""
        pick = sa.select(*JOB_COLUMNS, jobs.c.lease).where(jobs.c.id == job_id)
        if self._db.dialect == "postgresql":
            pick = pick.with_for_update()
        row = conn.execute(pick).one_or_none()
        if row is None:
            raise JobNotFound(job_id)
        job = job_from_row(row._mapping, self._db.clock())
        moving = target is not None and target != job.status
        if job.terminal or (moving and not can_transition(job.status, target or job.status)):
            raise IllegalTransition(job_id, job.status, target or job.status)
        if not job.external:
            raise ReportRefused(job_id, job.status, "jobtrail runs it; only its runner reports")
        if row.lease is not None:
            raise ReportRefused(job_id, job.status, "a runner holds it and reports its progress")
        return job

    def _update_in_place(
        self, conn: Connection, job: Job, values: dict[str, Any], events: list[NewEvent]
    ) -> Job:
        now = self._db.clock()
        row = conn.execute(
            jobs.update()
            .where(jobs.c.id == job.id, jobs.c.status == job.status.value)
            .values(updated_at=now, **values)
            .returning(*JOB_COLUMNS)
        ).one_or_none()
        if row is None:
            raise IllegalTransition(job.id, job.status, job.status)
        append_events(conn, now, [(job.id, e) for e in events])
        return job_from_row(row._mapping, now)

    def retry(self, job_id: str, only_failed_items: bool = False, actor: str | None = None) -> Job:
        """Insert a new job repeating a failed, partial or cancelled one (``retry_of`` links
        them; with ``only_failed_items`` it is limited to the items that failed), and note the
        retry in the old job's history. Raises ``IllegalTransition`` for any other job, and
        ``ItemsNotListed`` (one) for only the failed items of a job that lists fewer than it
        failed."""
        with self._db.write() as conn:
            old = self._get(conn, job_id)
            if old.status not in RETRYABLE:
                raise IllegalTransition(job_id, old.status, Status.QUEUED)
            only = None
            if only_failed_items:
                failed = sa.select(job_items.c.item_id).where(job_items.c.job_id == job_id)
                only = list(conn.execute(failed.order_by(job_items.c.id)).scalars())
                if len(only) < (old.items_failed or 0):  # the rest would count as succeeded
                    raise ItemsNotListed(job_id, old.status, len(only), old.items_failed or 0)
            now = self._db.clock()
            row = new_row(_repeat(old, only), now)
            conn.execute(jobs.insert(), [row])
            append_labels(conn, [row])
            note = f"retried as {row['id']}" + (" (failed items only)" if only is not None else "")
            append_events(
                conn,
                now,
                [
                    (row["id"], NewEvent(EventType.CREATED, actor=actor)),
                    (job_id, NewEvent(EventType.LOG, note, {"retry": row["id"]}, actor)),
                ],
            )
        journal.created([row])
        return job_from_row(row, now)

    def note(self, job_id: str, event: NewEvent) -> None:
        """Append an event to a job's history, whatever its state."""
        with self._db.write() as conn:
            append_events(conn, self._db.clock(), [(job_id, event)])

    # -- reading --------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job with this id; raises ``JobNotFound``."""
        with self._db.raw(write=None) as session:
            rows = session.execute(self._statements.get, {"id": job_id})
        if not rows:
            raise JobNotFound(job_id)
        return job_from_row(rows[0], self._db.clock())

    def get_by_key(self, key: str, owner: str | None = None) -> Job:
        """The job with idempotency ``key`` among ``owner``'s jobs (None: the unowned ones);
        raises ``JobNotFound`` (naming the key)."""
        stmt = sa.select(*JOB_COLUMNS).where(
            jobs.c.key_scope == key_scope(owner), jobs.c.key == key
        )
        with self._db.read() as conn:
            row = conn.execute(stmt).one_or_none()
        if row is None:
            raise JobNotFound(key)
        return job_from_row(row._mapping, self._db.clock())

    def _get(self, conn: Connection, job_id: str) -> Job:
        row = conn.execute(sa.select(*JOB_COLUMNS).where(jobs.c.id == job_id)).one_or_none()
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(row._mapping, self._db.clock())

    def find(
        self, filters: Filters, limit: int = 50, offset: int = 0, order: str = "created"
    ) -> Page:
        """A page of jobs matching ``filters`` with the exact total count: newest first, or
        longest first with ``order="duration"``."""
        conditions = listing_conditions(filters)
        count = sa.select(sa.func.count()).select_from(jobs).where(*conditions)
        sort: list[sa.UnaryExpression[Any]] = [jobs.c.created_at.desc(), jobs.c.id.desc()]
        if order == "duration":
            sort.insert(0, jobs.c.duration_seconds.desc().nulls_last())
        page = (
            sa.select(*JOB_COLUMNS).where(*conditions).order_by(*sort).limit(limit).offset(offset)
        )
        with self._db.read() as conn:
            total = conn.execute(count).scalar_one()
            rows = conn.execute(page).all() if total > offset else []
        now = self._db.clock()
        found = [job_from_row(r._mapping, now) for r in rows]
        return Page(jobs=found, total_count=total, limit=limit, offset=offset)

    def events(self, job_id: str, after: int = 0, limit: int = 100) -> list[Event]:
        """A job's history in order, starting after event id ``after``."""
        stmt = (
            sa.select(job_events)
            .where(job_events.c.job_id == job_id, job_events.c.id > after)
            .order_by(job_events.c.id)
            .limit(limit)
        )
        with self._db.read() as conn:
            return [event_from_row(r._mapping) for r in conn.execute(stmt)]


_KEPT_WHEN_NULL = frozenset(
    {"progress", "items_total", "items_done", "items_succeeded", "items_failed"}
)


def _known(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without null percentages or counts: a report that leaves one out (or sends
    null for it) keeps the job's."""
    return {k: v for k, v in values.items() if not (k in _KEPT_WHEN_NULL and v is None)}


def _repeat(old: Job, only_items: list[str] | None) -> NewJob:
    """A new queued job that repeats ``old``."""
    return NewJob(
        kind=old.kind,
        payload=old.payload,
        owner=old.owner,
        trigger="retry",
        queue=old.queue,
        priority=old.priority,
        labels=old.labels,
        max_attempts=old.max_attempts,
        timeout=old.timeout,
        retry_of=old.id,
        only_items=only_items,
    )


def _status_event(target: Status, note: str | None, actor: str | None) -> NewEvent:
    """The history entry of a reported status change."""
    if target.terminal:
        return NewEvent(EventType(target.value), note, actor=actor)
    if target is Status.RUNNING:
        return NewEvent(EventType.STARTED, "reported running", actor=actor)
    if target is Status.WAITING:
        return NewEvent(EventType.WAITING, note, actor=actor)
    return NewEvent(EventType.LOG, "reported back to queued", actor=actor)
