"""Store: every read and write of job records, one implementation for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobtrail.exceptions import IllegalTransition, JobNotFound
from jobtrail.jobs import (
    Event,
    EventType,
    FailedItem,
    Filters,
    Job,
    Page,
    Stats,
    Status,
    can_transition,
    sources_of,
)
from jobtrail.store.access import AccessWrites
from jobtrail.store.base import HELD
from jobtrail.store.gauges import Snapshot, snapshot
from jobtrail.store.hot import progress_params
from jobtrail.store.planning import PlanningWrites
from jobtrail.store.prepared import RawSession, raw_transaction
from jobtrail.store.queries import StatsQuery, daily_counts, listing_conditions, window_start
from jobtrail.store.records import NewEvent, NewFailedItem, NewJob, Progress
from jobtrail.store.rows import JOB_COLUMNS, event_from_row, failed_item_from_row, job_from_row
from jobtrail.store.runs import RunWrites
from jobtrail.store.tables import job_events, job_items, jobs


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What a progress write learned: whether it landed and whether a cancel is pending."""

    applied: bool
    cancel_requested: bool


class Store(RunWrites, PlanningWrites, AccessWrites):
    """The only place that talks to the database.

    Methods are named after the change they make. Every status change is a compare-and-set
    (``UPDATE … WHERE id = :id AND status IN (:allowed)``), so a late writer cannot move a
    terminal job or overwrite what a canceller or rescuer decided.
    """

    # -- creating jobs ------------------------------------------------------------------

    def add(self, new_jobs: Sequence[NewJob], actor: str | None = None) -> list[Job]:
        """Insert jobs in one transaction; a job whose ``key`` exists yields the existing job."""
        return [job for job, _created in self.add_or_get(new_jobs, actor)]

    def add_or_get(
        self, new_jobs: Sequence[NewJob], actor: str | None = None
    ) -> list[tuple[Job, bool]]:
        """Like ``add``, telling for each job whether it was created (False: its key existed)."""
        now = self.clock()
        rows = [_new_row(n, now) for n in new_jobs]
        with self.write() as conn:
            stmt = self._insert(jobs).on_conflict_do_nothing(index_elements=["key"])
            inserted = {r.id for r in conn.execute(stmt.returning(jobs.c.id), rows)}
            created = NewEvent(EventType.CREATED, actor=actor)
            self._log_events(conn, now, [(r["id"], created) for r in rows if r["id"] in inserted])
            started = NewEvent(EventType.STARTED, actor=actor)
            self._log_events(
                conn,
                now,
                [(r["id"], started) for r in rows if r["id"] in inserted and r["attempt"] == 1],
            )
            existing = self._by_keys(conn, [r["key"] for r in rows if r["id"] not in inserted])
        return [
            (job_from_row(r, now), True) if r["id"] in inserted else (existing[r["key"]], False)
            for r in rows
        ]

    def _by_keys(self, conn: Connection, keys: list[str]) -> dict[str, Job]:
        if not keys:
            return {}
        now = self.clock()
        rows = conn.execute(sa.select(*JOB_COLUMNS).where(jobs.c.key.in_(set(keys))))
        return {r.key: job_from_row(r._mapping, now) for r in rows}

    def start(self, new: NewJob, worker: str, lease: str) -> Job:
        """Insert a job that is already running here (work tracked in place, no queue)."""
        now = self.clock()
        row = _new_row(new, now) | {
            "status": Status.RUNNING.value,
            "attempt": 1,
            "started_at": now,
            "heartbeat_at": now,
            "worker": worker,
            "lease": lease,
        }
        with self.write() as conn:
            conn.execute(jobs.insert(), [row])
            self._append_events(
                conn, new.id, now, [NewEvent(EventType.CREATED), NewEvent(EventType.STARTED)]
            )
        return job_from_row(row, now)

    # -- changing jobs ------------------------------------------------------------------

    def flush(
        self,
        job_id: str,
        lease: str,
        progress: Progress,
        events: Sequence[NewEvent] = (),
        items: Sequence[NewFailedItem] = (),
    ) -> FlushResult:
        """Write a running job's progress; ignored (not an error) once the job left this runner."""
        now = self.clock()
        values = progress_params(progress) | {"id": job_id, "lease": lease, "now": now}

        def write(session: RawSession) -> FlushResult:
            rows = session.execute(self.hot.flush, values)
            if not rows:
                return FlushResult(applied=False, cancel_requested=False)
            self.hot.append(
                session, now, [(job_id, e) for e in events], [(job_id, i) for i in items]
            )
            return FlushResult(applied=True, cancel_requested=bool(rows[0]["cancel_requested"]))

        return self.run_write(write)

    def cancel_requested(self, job_id: str, lease: str) -> bool | None:
        """Whether a cancel is pending for a job this runner holds; None once it lost the job."""
        stmt = sa.select(jobs.c.cancel_requested).where(
            jobs.c.id == job_id, jobs.c.lease == lease, jobs.c.status.in_(HELD)
        )
        with self.read() as conn:
            value = conn.execute(stmt).scalar_one_or_none()
        return None if value is None else bool(value)

    def finish(
        self,
        job_id: str,
        lease: str,
        status: Status,
        progress: Progress,
        *,
        started_at: datetime | None,
        result: Any = None,
        error_message: str | None = None,
        error_details: Any = None,
        events: Sequence[NewEvent] = (),
        items: Sequence[NewFailedItem] = (),
        wait: bool = True,
    ) -> bool:
        """Move a job this runner holds to a terminal state, with its last progress and events.

        Returns False (and writes nothing) if the job was meanwhile rescued, cancelled or
        finished by someone else. With ``wait=False`` (workers) the write is shared with the
        next group commit and True only means it was queued.
        """
        now = self.clock()
        values = progress_params(progress) | {
            "id": job_id,
            "lease": lease,
            "now": now,
            "result": result,
            "error_message": error_message,
            "error_details": error_details,
            "duration_seconds": None if started_at is None else (now - started_at).total_seconds(),
        }

        def write(session: RawSession) -> bool:
            if session.rowcount(self.hot.finish[status], values) != 1:
                return False
            self.hot.append(
                session, now, [(job_id, e) for e in events], [(job_id, i) for i in items]
            )
            return True

        if not wait:
            self.run_write_soon(write, f"finish of job {job_id}")
            return True
        return self.run_write(write)

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
            with self.write() as own:
                return self.transition(
                    job_id, target, from_=allowed, values=values, events=events, conn=own
                )
        now = self.clock()
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
            current = self._get(conn, job_id)
            raise IllegalTransition(job_id, current.status, target)
        self._append_events(conn, job_id, now, events)
        return job_from_row(row._mapping, now)

    def cancel(self, job_id: str, actor: str | None = None) -> Job:
        """Cancel a job: queued or waiting ones at once, running ones at their next checkpoint."""
        with self.write() as conn:
            job = self._get(conn, job_id)
            if job.status in (Status.QUEUED, Status.WAITING):
                return self.transition(
                    job_id,
                    Status.CANCELLED,
                    from_=(Status.QUEUED, Status.WAITING),
                    events=[NewEvent(EventType.CANCELLED, "cancelled before it ran", actor=actor)],
                    conn=conn,
                )
            if job.status is not Status.RUNNING:
                raise IllegalTransition(job_id, job.status, Status.CANCELLED)
            if job.cancel_requested:
                return job
            now = self.clock()
            row = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == Status.RUNNING.value)
                .values(cancel_requested=True, updated_at=now)
                .returning(*JOB_COLUMNS)
            ).one()
            self._append_events(
                conn, job_id, now, [NewEvent(EventType.CANCEL_REQUESTED, actor=actor)]
            )
            return job_from_row(row._mapping, now)

    def report(
        self,
        job_id: str,
        values: dict[str, Any],
        target: Status | None = None,
        actor: str | None = None,
    ) -> Job:
        """Apply progress and/or a status change reported for a job that runs elsewhere.

        Raises ``IllegalTransition`` for a terminal job or a change the state machine forbids.
        """
        with self.write() as conn:
            job = self._get(conn, job_id)
            moving = target is not None and target != job.status
            if job.terminal or (moving and not can_transition(job.status, target or job.status)):
                raise IllegalTransition(job_id, job.status, target or job.status)
            now = self.clock()
            values = dict(values, heartbeat_at=now)
            events: list[NewEvent] = []
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

    def _update_in_place(
        self, conn: Connection, job: Job, values: dict[str, Any], events: list[NewEvent]
    ) -> Job:
        now = self.clock()
        row = conn.execute(
            jobs.update()
            .where(jobs.c.id == job.id, jobs.c.status == job.status.value)
            .values(updated_at=now, **values)
            .returning(*JOB_COLUMNS)
        ).one_or_none()
        if row is None:
            raise IllegalTransition(job.id, job.status, job.status)
        self._append_events(conn, job.id, now, events)
        return job_from_row(row._mapping, now)

    def note(self, job_id: str, event: NewEvent) -> None:
        """Append an event to a job's history, whatever its state."""
        with self.write() as conn:
            self._append_events(conn, job_id, self.clock(), [event])

    # -- reading jobs -------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job with this id; raises ``JobNotFound``."""
        with raw_transaction(self.engine, write=None) as session:
            rows = session.execute(self.hot.get, {"id": job_id})
        if not rows:
            raise JobNotFound(job_id)
        return job_from_row(rows[0], self.clock())

    def find(
        self, filters: Filters, limit: int = 50, offset: int = 0, order: str = "created"
    ) -> Page:
        """A page of jobs matching ``filters`` with the exact total count: newest first, or
        longest first with ``order="duration"``."""
        conditions = listing_conditions(filters)
        count = sa.select(sa.func.count()).select_from(jobs).where(*conditions)
        newest = (jobs.c.created_at.desc(), jobs.c.id.desc())
        sort: list[sa.UnaryExpression[Any]] = list(newest)
        if order == "duration":
            sort.insert(0, jobs.c.duration_seconds.desc().nulls_last())
        page = (
            sa.select(*JOB_COLUMNS).where(*conditions).order_by(*sort).limit(limit).offset(offset)
        )
        with self.read() as conn:
            total = conn.execute(count).scalar_one()
            rows = conn.execute(page).all() if total > offset else []
        now = self.clock()
        found = [job_from_row(r._mapping, now) for r in rows]
        return Page(jobs=found, total_count=total, limit=limit, offset=offset)

    def changes(self, since: datetime, filters: Filters, limit: int = 200) -> list[Job]:
        """Jobs matching ``filters`` updated at or after ``since``, oldest change first."""
        stmt = (
            sa.select(*JOB_COLUMNS)
            .where(jobs.c.updated_at >= since, *listing_conditions(filters))
            .order_by(jobs.c.updated_at, jobs.c.id)
            .limit(limit)
        )
        with self.read() as conn:
            rows = conn.execute(stmt).all()
        now = self.clock()
        return [job_from_row(r._mapping, now) for r in rows]

    def timeline(
        self, days: int, owner: str | None = None, kind: str | None = None
    ) -> dict[str, dict[str, int]]:
        """Jobs created per day (``YYYY-MM-DD``) and status over the last ``days`` days,
        including jobs already purged (from the daily rollups)."""
        since = window_start(self.clock(), days)
        with self.read() as conn:
            return daily_counts(conn, since, owner, kind)

    def gauges(self) -> Snapshot:
        """Every metric figure, read in one transaction."""
        with self.read() as conn:
            return snapshot(conn, self.clock())

    def events(self, job_id: str, after: int = 0, limit: int = 100) -> list[Event]:
        """A job's history in order, starting after event id ``after``."""
        stmt = (
            sa.select(job_events)
            .where(job_events.c.job_id == job_id, job_events.c.id > after)
            .order_by(job_events.c.id)
            .limit(limit)
        )
        with self.read() as conn:
            return [event_from_row(r._mapping) for r in conn.execute(stmt)]

    def failed_items(self, job_id: str) -> list[FailedItem]:
        """The items a job failed to process, in the order they failed."""
        stmt = sa.select(job_items).where(job_items.c.job_id == job_id).order_by(job_items.c.id)
        with self.read() as conn:
            return [failed_item_from_row(r._mapping) for r in conn.execute(stmt)]

    def stats(self, days: int = 30, owner: str | None = None, kind: str | None = None) -> Stats:
        """Aggregates over the jobs created in the last ``days`` days, computed in SQL."""
        since = window_start(self.clock(), days)
        with self.read() as conn:
            return StatsQuery(since, owner, kind).run(conn, days)


def _new_row(new: NewJob, now: datetime) -> dict[str, Any]:
    return {
        "id": new.id,
        "key": new.key,
        "kind": new.kind,
        "owner": new.owner,
        "trigger": new.trigger,
        "queue": new.queue,
        "priority": new.priority.rank,
        "status": new.status.value,
        "progress": 0.0,
        "message": new.message,
        "items_total": new.items_total,
        "items_done": None,
        "items_succeeded": None,
        "items_failed": None,
        "progress_data": None,
        "payload": new.payload,
        "result": None,
        "error_message": None,
        "error_details": None,
        "labels": dict(new.labels),
        "attempt": 1 if new.status is Status.RUNNING else 0,
        "max_attempts": new.max_attempts,
        "timeout": new.timeout,
        "created_at": now,
        "updated_at": now,
        "started_at": now if new.status is Status.RUNNING else None,
        "completed_at": None,
        "run_after": new.run_after or now,
        "heartbeat_at": now if new.status is Status.RUNNING else None,
        "duration_seconds": None,
        "cancel_requested": False,
        "stalled": False,
        "worker": None,
        "lease": None,
        "schedule": new.schedule,
        "retry_of": new.retry_of,
        "only_items": list(new.only_items) if new.only_items is not None else None,
    }


def _status_event(target: Status, note: str | None, actor: str | None) -> NewEvent:
    """The history entry of a reported status change."""
    if target.terminal:
        return NewEvent(EventType(target.value), note, actor=actor)
    if target is Status.RUNNING:
        return NewEvent(EventType.STARTED, "reported running", actor=actor)
    if target is Status.WAITING:
        return NewEvent(EventType.WAITING, note, actor=actor)
    return NewEvent(EventType.LOG, "reported back to queued", actor=actor)
