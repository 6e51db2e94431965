"""RunStore: the writes of whoever runs a job — claims, heartbeats, progress, outcomes."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jobtrail.exceptions import DuplicateKey, InvalidData
from jobtrail.jobs import Job, NewEvent, NewFailedItem, NewJob, Progress
from jobtrail.states import HELD, EventType, Status, sources_of
from jobtrail.store.database import Database
from jobtrail.store.rows import (
    JOB_COLUMNS,
    append_events,
    append_labels,
    job_from_row,
    progress_columns,
    running_row,
)
from jobtrail.store.statements import RawSession, Statements, progress_params, status_in
from jobtrail.store.tables import jobs
from jobtrail.store.waits import Waits

c = jobs.c


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job a worker now holds, with its lease and the items a retry should limit itself to."""

    job: Job
    lease: str
    only_items: Sequence[str] | None


@dataclass(frozen=True, slots=True)
class Beat:
    """What a heartbeat learned about one held job."""

    job_id: str
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What a progress write learned: whether it landed and whether a cancel is pending."""

    applied: bool
    cancel_requested: bool


class RunStore:
    """Writes made by a job's runner. Each one names the runner's lease, so a runner that lost
    its job (rescued, cancelled, finished elsewhere) changes nothing; every status change takes
    its source states from ``TRANSITIONS``."""

    def __init__(self, database: Database, statements: Statements) -> None:
        self._db = database
        self._statements = statements
        self.waits = Waits(database, statements)  # a held job waits (``ctx.wait``), runs again

    def start(self, new: NewJob, worker: str, lease: str) -> Job:
        """Insert a job that is already running here (work tracked in place, no queue);
        ``DuplicateKey`` (with the existing job) if its key already names one."""
        now = self._db.clock()
        row = running_row(new, now, worker, lease)
        events = [NewEvent(EventType.CREATED), NewEvent(EventType.STARTED)]
        with self._db.write() as conn:
            keys = ["key_scope", "key"]
            insert = self._db.insert(jobs).on_conflict_do_nothing(index_elements=keys)
            if conn.execute(insert.returning(c.id), [row]).first() is None:
                scope = (c.key_scope == row["key_scope"], c.key == new.key)
                taken = conn.execute(sa.select(*JOB_COLUMNS).where(*scope)).one()
                raise DuplicateKey(str(new.key), job_from_row(taken._mapping, now))
            append_labels(conn, [row])
            append_events(conn, now, [(new.id, e) for e in events])
        return job_from_row(row, now)

    def claim(
        self,
        worker: str,
        lease: str,
        limit: int,
        kinds: Collection[str],
        queues: Collection[str] | None = None,
    ) -> list[Claimed]:
        """Take up to ``limit`` due jobs of ``kinds``, highest priority then oldest first.

        One transaction for the whole batch; on PostgreSQL rows another worker is claiming
        are skipped (``FOR UPDATE SKIP LOCKED``), on SQLite the write lock serialises claims.
        """
        now = self._db.clock()
        values = _due_values(now, kinds, queues)
        values |= {"limit": limit, "worker": worker, "lease": lease}
        statements = self._statements
        with self._db.raw(write=True) as session:
            rows = session.execute(statements.claim(len(kinds), len(queues or ())), values)
            if not rows:
                return []
            # Failed items belong to the attempt that failed them.
            retried = [{"job_id": r["id"]} for r in rows if r["attempt"] > 1]
            session.execute_many(statements.forget_items, retried)
            started = [
                (r["id"], NewEvent(EventType.STARTED, f"attempt {r['attempt']}")) for r in rows
            ]
            statements.append(session, now, started)
        # RETURNING gives rows in no particular order; hand them out in claim order.
        rows.sort(key=lambda r: (-r["priority"], r["run_after"], r["id"]))
        return [Claimed(job_from_row(r, now), lease, r["only_items"]) for r in rows]

    def any_due(self, kinds: Collection[str], queues: Collection[str] | None = None) -> bool:
        """Whether ``claim`` would find a job now (a read, taking no lock)."""
        values = _due_values(self._db.clock(), kinds, queues)
        due = self._statements.any_due(len(kinds), len(queues or ()))
        with self._db.raw(write=None) as session:
            return bool(session.execute(due, values))

    def take_over(self, job_id: str, lease: str, worker: str) -> Job | None:
        """Start (or, after a redelivery, restart) a job whose run another engine dispatched.

        A queued or waiting job starts; a running one is first rescued from its previous
        runner (a ``rescued`` event; the old lease stops working), then started. None for a
        job that already ended — a finished job never runs again — or that does not exist.
        """
        now = self._db.clock()
        pick = sa.select(c.status, c.worker).where(c.id == job_id)
        if self._db.dialect == "postgresql":
            pick = pick.with_for_update()
        with self._db.write() as conn:
            found = conn.execute(pick).one_or_none()
            if found is None or Status(found.status).terminal:
                return None
            events: list[NewEvent] = []
            if found.status == Status.RUNNING.value:
                back = sources_of(Status.QUEUED, among={Status.RUNNING})
                conn.execute(
                    jobs.update()
                    .where(c.id == job_id, status_in(back))
                    .values(status=Status.QUEUED.value, lease=None, updated_at=now)
                )
                events.append(rescued(found.worker))
            row = conn.execute(
                jobs.update()
                .where(c.id == job_id, status_in(sources_of(Status.RUNNING)))
                .values(
                    status=Status.RUNNING.value,
                    attempt=c.attempt + 1,
                    lease=lease,
                    worker=worker,
                    started_at=now,
                    heartbeat_at=self._db.heartbeat_clock(now),
                    updated_at=now,
                )
                .returning(*JOB_COLUMNS)
            ).one()
            events.append(NewEvent(EventType.STARTED, f"attempt {row.attempt} on {worker}"))
            append_events(conn, now, [(job_id, e) for e in events])
        return job_from_row(row._mapping, now)

    def heartbeat(self, leases: dict[str, str]) -> list[Beat]:
        """Refresh the heartbeat of held jobs (``{job_id: lease}``); report pending cancels.

        Jobs missing from the answer are no longer held by their lease (rescued or ended).
        """
        if not leases:
            return []
        now = self._db.clock()
        held = sa.tuple_(c.id, c.lease).in_(list(leases.items()))
        stmt = (
            jobs.update()
            .where(held, status_in(HELD))
            .values(heartbeat_at=self._db.heartbeat_clock(now))
            .returning(c.id, c.cancel_requested)
        )
        with self._db.write() as conn:
            return [Beat(r.id, bool(r.cancel_requested)) for r in conn.execute(stmt)]

    def flush(
        self,
        job_id: str,
        lease: str,
        progress: Progress,
        events: Sequence[NewEvent] = (),
        items: Sequence[NewFailedItem] = (),
    ) -> FlushResult:
        """Write a held job's progress; ignored (not an error) once the job left this runner."""
        now = self._db.clock()
        values = progress_params(progress) | {"id": job_id, "lease": lease, "now": now}
        statements = self._statements

        def write(session: RawSession) -> FlushResult:
            rows = session.execute(statements.flush, values)
            if not rows:
                return FlushResult(applied=False, cancel_requested=False)
            statements.append(
                session, now, [(job_id, e) for e in events], [(job_id, i) for i in items]
            )
            return FlushResult(applied=True, cancel_requested=bool(rows[0]["cancel_requested"]))

        return self._db.commits.run_write(write)

    def cancel_requested(self, job_id: str, lease: str) -> bool | None:
        """Whether a cancel is pending for a job this runner holds; None once it lost the job."""
        stmt = sa.select(c.cancel_requested).where(
            c.id == job_id, c.lease == lease, status_in(HELD)
        )
        with self._db.read() as conn:
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
        next group commit and True only means it was queued. An outcome the database refuses
        (``InvalidData``) never leaves the job running: it ends ``failed`` with the reason.
        """
        now = self._db.clock()
        duration = None if started_at is None else (now - started_at).total_seconds()
        values = progress_params(progress) | {
            "id": job_id,
            "lease": lease,
            "now": now,
            "result": result,
            "error_message": error_message,
            "error_details": error_details,
            "duration_seconds": duration,
        }
        statements = self._statements

        def write(session: RawSession) -> bool:
            if session.rowcount(statements.finish[status], values) != 1:
                return False
            statements.append(
                session, now, [(job_id, e) for e in events], [(job_id, i) for i in items]
            )
            return True

        refuse = functools.partial(self._refused, job_id, lease, now, duration)
        if not wait:
            self._db.commits.run_write_soon(write, f"finish of job {job_id}", fallback=refuse)
            return True
        try:
            return self._db.commits.run_write(write)
        except InvalidData as exc:
            return self._db.commits.run_write(refuse(exc))

    def _refused(
        self, job_id: str, lease: str, now: datetime, duration: float | None, error: InvalidData
    ) -> Callable[[RawSession], bool]:
        """The write that fails a held job whose outcome the database refused, with why."""
        reason = f"the job's outcome could not be stored: {error.reason}"[:4096]
        values = {"id": job_id, "lease": lease, "now": now, "duration_seconds": duration}
        values["error_message"] = reason
        statements = self._statements

        def write(session: RawSession) -> bool:
            if session.rowcount(statements.refuse, values) != 1:
                return False
            event = NewEvent(EventType.FAILED, reason)
            statements.append(session, now, [(job_id, event)])
            return True

        return write

    def requeue(
        self,
        job_id: str,
        lease: str,
        progress: Progress,
        events: Sequence[NewEvent],
        *,
        delay: float = 0.0,
        charge_attempt: bool = True,
        values: dict[str, Any] | None = None,
    ) -> bool:
        """Put a held job back in the queue (a retry after ``delay``, or an interruption that
        does not count as an attempt). False if the job was meanwhile taken from this runner."""
        now = self._db.clock()
        back = sources_of(Status.QUEUED, among=HELD)
        stmt = (
            jobs.update()
            .where(c.id == job_id, c.lease == lease, status_in(back))
            .values(
                **progress_columns(progress),
                **(values or {}),
                status=Status.QUEUED.value,
                wait_reason=None,
                attempt=c.attempt if charge_attempt else c.attempt - 1,
                run_after=now + timedelta(seconds=delay),
                lease=None,
                worker=None,
                updated_at=now,
            )
        )
        with self._db.write() as conn:
            if conn.execute(stmt).rowcount != 1:
                return False
            append_events(conn, now, [(job_id, e) for e in events])
        return True

    def mark_stalled(self, job_id: str, lease: str, stalled_for: float) -> bool:
        """Flag a held job whose progress has not moved for ``stalled_for`` seconds."""
        now = self._db.clock()
        stmt = (
            jobs.update()
            .where(c.id == job_id, c.lease == lease, status_in(HELD), c.stalled.is_(False))
            .values(stalled=True, updated_at=now)
        )
        with self._db.write() as conn:
            if conn.execute(stmt).rowcount != 1:
                return False
            message = f"no progress for {stalled_for:.0f} s"
            append_events(conn, now, [(job_id, NewEvent(EventType.STALLED, message))])
        return True


def rescued(worker: str | None) -> NewEvent:
    """The event of a job taken back from a runner whose heartbeat was lost."""
    return NewEvent(EventType.RESCUED, f"heartbeat lost from {worker or 'an unknown worker'}")


def _due_values(
    now: datetime, kinds: Collection[str], queues: Collection[str] | None
) -> dict[str, Any]:
    """The parameters of the claim conditions (``statements._due``)."""
    values: dict[str, Any] = {"now": now}
    values |= {f"kind_{i}": k for i, k in enumerate(sorted(kinds))}
    values |= {f"queue_{i}": q for i, q in enumerate(sorted(queues or ()))}
    return values
