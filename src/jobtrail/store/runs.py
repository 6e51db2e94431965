"""RunWrites: the store's side of running jobs — claims, heartbeats, requeues and rescues."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jobtrail.jobs import EventType, Job, Status
from jobtrail.store.base import HELD, StoreBase
from jobtrail.store.prepared import raw_transaction
from jobtrail.store.records import NewEvent, Progress
from jobtrail.store.rows import JOB_COLUMNS, job_from_row
from jobtrail.store.tables import jobs


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


class RunWrites(StoreBase):
    """Writes made by workers: every one is a compare-and-set on status and lease."""

    def db_now(self, now: datetime) -> Any:
        """The clock that heartbeats are written and compared with: the database's own on
        PostgreSQL (so clock skew between machines cannot cause false rescues), else ``now``."""
        return sa.func.now() if self.dialect == "postgresql" else now

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
        kinds, queues = sorted(kinds), sorted(queues or ())
        now = self.clock()
        values: dict[str, Any] = {"now": now, "limit": limit, "worker": worker, "lease": lease}
        values |= {f"kind_{i}": k for i, k in enumerate(kinds)}
        values |= {f"queue_{i}": q for i, q in enumerate(queues)}
        with raw_transaction(self.engine, write=True) as session:
            rows = session.execute(self.hot.claim(len(kinds), len(queues)), values)
            if not rows:
                return []
            # Failed items belong to the attempt that failed them.
            retried = [{"job_id": r["id"]} for r in rows if r["attempt"] > 1]
            session.execute_many(self.hot.forget_items, retried)
            started = [
                (r["id"], NewEvent(EventType.STARTED, f"attempt {r['attempt']}")) for r in rows
            ]
            self.hot.append(session, now, started)
        # RETURNING gives rows in no particular order; hand them out in claim order.
        rows.sort(key=lambda r: (-r["priority"], r["run_after"], r["id"]))
        return [Claimed(job_from_row(r, now), lease, r["only_items"]) for r in rows]

    def take_over(self, job_id: str, lease: str, worker: str) -> Job | None:
        """Start (or, after a redelivery, restart) a job whose run another engine dispatched.

        A queued or waiting job starts; a running one is taken from its previous runner (a
        ``rescued`` event, and the old lease stops working). None for a job that already
        ended — a finished job never runs again — or that does not exist.
        """
        now = self.clock()
        c = jobs.c
        pick = sa.select(c.status, c.worker).where(c.id == job_id)
        if self.dialect == "postgresql":
            pick = pick.with_for_update()
        with self.write() as conn:
            found = conn.execute(pick).one_or_none()
            if found is None or Status(found.status).terminal:
                return None
            row = conn.execute(
                jobs.update()
                .where(c.id == job_id)
                .values(
                    status=Status.RUNNING.value,
                    attempt=c.attempt + 1,
                    lease=lease,
                    worker=worker,
                    started_at=now,
                    heartbeat_at=self.db_now(now),
                    updated_at=now,
                )
                .returning(*JOB_COLUMNS)
            ).one()
            events = [NewEvent(EventType.STARTED, f"attempt {row.attempt} on {worker}")]
            if found.status == Status.RUNNING.value:
                events.insert(0, _rescued(found.worker))
            self._append_events(conn, job_id, now, events)
        return job_from_row(row._mapping, now)

    def heartbeat(self, leases: dict[str, str]) -> list[Beat]:
        """Refresh the heartbeat of held jobs (``{job_id: lease}``); report pending cancels.

        Jobs missing from the answer are no longer held by their lease (rescued or ended).
        """
        if not leases:
            return []
        now = self.clock()
        held = sa.tuple_(jobs.c.id, jobs.c.lease).in_(list(leases.items()))
        stmt = (
            jobs.update()
            .where(held, jobs.c.status.in_(HELD))
            .values(heartbeat_at=self.db_now(now))
            .returning(jobs.c.id, jobs.c.cancel_requested)
        )
        with self.write() as conn:
            return [Beat(r.id, bool(r.cancel_requested)) for r in conn.execute(stmt)]

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
        now = self.clock()
        c = jobs.c
        stmt = (
            jobs.update()
            .where(c.id == job_id, c.lease == lease, c.status == Status.RUNNING.value)
            .values(
                **progress.columns(),
                **(values or {}),
                status=Status.QUEUED.value,
                attempt=c.attempt if charge_attempt else c.attempt - 1,
                run_after=now + timedelta(seconds=delay),
                lease=None,
                worker=None,
                updated_at=now,
            )
        )
        with self.write() as conn:
            if conn.execute(stmt).rowcount != 1:
                return False
            self._append_events(conn, job_id, now, events)
        return True

    def rescue(self, heartbeat_timeout: float) -> list[Job]:
        """Take back running jobs whose heartbeat is older than ``heartbeat_timeout`` seconds.

        Jobs with attempts left go back to ``queued`` (a ``rescued`` event); the others end
        ``failed`` with "worker lost". Their old runner's lease stops working either way.
        """
        now = self.clock()
        c = jobs.c
        stale = [
            c.status == Status.RUNNING.value,
            c.heartbeat_at < self.db_now(now) - timedelta(seconds=heartbeat_timeout),
        ]
        back = (
            jobs.update()
            .where(*stale, c.attempt < c.max_attempts)
            .values(
                # ``worker`` keeps the lost worker's name; the next claim replaces it.
                status=Status.QUEUED.value,
                run_after=now,
                lease=None,
                updated_at=now,
            )
            .returning(*JOB_COLUMNS)
        )
        lost = (
            jobs.update()
            .where(*stale, c.attempt >= c.max_attempts)
            .values(
                status=Status.FAILED.value,
                error_message="worker lost",
                completed_at=now,
                updated_at=now,
                lease=None,
            )
            .returning(*JOB_COLUMNS)
        )
        with self.write() as conn:
            requeued = conn.execute(back).all()
            failed = conn.execute(lost).all()
            self._log_events(
                conn,
                now,
                [(r.id, _rescued(r.worker)) for r in requeued]
                + [(r.id, NewEvent(EventType.FAILED, "worker lost")) for r in failed],
            )
        return [job_from_row(r._mapping, now) for r in [*requeued, *failed]]

    def mark_stalled(self, job_id: str, lease: str, stalled_for: float) -> bool:
        """Flag a held job whose progress has not moved for ``stalled_for`` seconds."""
        now = self.clock()
        c = jobs.c
        stmt = (
            jobs.update()
            .where(c.id == job_id, c.lease == lease, c.status.in_(HELD), c.stalled.is_(False))
            .values(stalled=True, updated_at=now)
        )
        with self.write() as conn:
            if conn.execute(stmt).rowcount != 1:
                return False
            message = f"no progress for {stalled_for:.0f} s"
            self._append_events(conn, job_id, now, [NewEvent(EventType.STALLED, message)])
        return True


def _rescued(worker: str | None) -> NewEvent:
    return NewEvent(EventType.RESCUED, f"heartbeat lost from {worker or 'an unknown worker'}")
