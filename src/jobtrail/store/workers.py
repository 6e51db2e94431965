"""WorkerStore: the registry of live workers, and the queue watch that moves a queued job no
live worker would take to ``waiting`` (with the reason) and back to ``queued`` when one can."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobtrail import journal
from jobtrail.jobs import NewEvent, WorkerInfo
from jobtrail.states import EventType, Status, sources_of
from jobtrail.store.database import Database
from jobtrail.store.rows import append_events
from jobtrail.store.statements import status_in
from jobtrail.store.tables import jobs, workers

c = jobs.c
w = workers.c

CONSUMING_ENGINE = "jobtrail"
"""The engine whose workers claim queued jobs (Celery's broker routes its own tasks)."""
BATCH = 1000
"""Jobs parked or released per transaction (a backlog takes several, none holds a long lock)."""
MAX_BATCHES = 100
"""Batches per watch: the rest waits for the next heartbeat."""


@dataclass(frozen=True, slots=True)
class QueueWatch:
    """What one watch did: jobs moved to ``waiting`` and back to ``queued``."""

    parked: int = 0
    released: int = 0


def no_consumer(queue: str) -> str:
    """The wait reason of a queued job on ``queue`` that no live worker consumes."""
    return f"no worker consumes queue '{queue}'"


class WorkerStore:
    """Workers register and refresh their row at every heartbeat, and delete it when they
    stop cleanly; a row not refreshed within ``heartbeat_timeout`` is a lost worker's."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def announce(self, info: WorkerInfo) -> None:
        """Insert or refresh a worker's row; ``last_seen_at`` is the heartbeat clock's now
        (the database's own on PostgreSQL), whatever ``info`` says."""
        row: dict[str, Any] = {
            "id": info.id,
            "engine": info.engine,
            "host": info.host,
            "pid": info.pid,
            "queues": None if info.queues is None else list(info.queues),
            "kinds": list(info.kinds),
            "concurrency": info.concurrency,
            "running": info.running,
            "started_at": info.started_at,
            "last_seen_at": self._db.heartbeat_clock(self._db.clock()),
        }
        stmt = self._db.insert(workers).values(row)
        changing = ("queues", "kinds", "concurrency", "running", "last_seen_at")
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"], set_={name: stmt.excluded[name] for name in changing}
        )
        with self._db.write() as conn:
            conn.execute(stmt)

    def forget(self, worker_id: str) -> None:
        """Delete a worker's row (it stopped cleanly)."""
        with self._db.write() as conn:
            conn.execute(workers.delete().where(w.id == worker_id))

    def live(self, heartbeat_timeout: float) -> list[WorkerInfo]:
        """The workers seen within ``heartbeat_timeout`` seconds, by host, pid and id."""
        stmt = (
            sa.select(workers)
            .where(self._seen_within(heartbeat_timeout))
            .order_by(w.host, w.pid, w.id)
        )
        with self._db.read() as conn:
            return [_info(r._mapping) for r in conn.execute(stmt)]

    def watch_queues(self, heartbeat_timeout: float) -> QueueWatch:
        """Forget lost workers; park queued jobs on queues no live jobtrail worker consumes
        (``waiting``, "no worker consumes queue 'gpu'") and release parked jobs whose queue
        has one again. Jobs reported from elsewhere (``external``) and jobs a runner holds are
        never touched. Batched: each batch is its own short transaction."""
        parked = released = 0
        for _ in range(MAX_BATCHES):
            with self._db.write() as conn:
                conn.execute(workers.delete().where(~self._seen_within(heartbeat_timeout)))
                consumed = self._consumed(conn)
                moved = self._park(conn, consumed), self._release(conn, consumed)
            parked, released = parked + moved[0], released + moved[1]
            if max(moved) < BATCH:
                break
        return QueueWatch(parked, released)

    def _seen_within(self, seconds: float) -> sa.ColumnElement[bool]:
        now = self._db.heartbeat_clock(self._db.clock())
        seen: sa.ColumnElement[bool] = w.last_seen_at >= now - timedelta(seconds=seconds)
        return seen

    def _consumed(self, conn: Connection) -> frozenset[str] | None:
        """The queues live jobtrail workers consume; None: every queue (one takes them all)."""
        rows = conn.execute(sa.select(w.queues).where(w.engine == CONSUMING_ENGINE)).scalars()
        queues: set[str] = set()
        for found in rows:
            if found is None:
                return None
            queues.update(found)
        return frozenset(queues)

    def _park(self, conn: Connection, consumed: frozenset[str] | None) -> int:
        if consumed is None:
            return 0
        source = sources_of(Status.WAITING, among={Status.QUEUED})
        where = [status_in(source), c.external.is_(False), c.queue.not_in(sorted(consumed))]
        reason = sa.literal(no_consumer("")[:-1]) + c.queue + sa.literal("'")
        rows = self._move(conn, where, Status.WAITING, reason)
        events = [(r.id, NewEvent(EventType.WAITING, r.wait_reason)) for r in rows]
        append_events(conn, self._db.clock(), events)
        return len(rows)

    def _release(self, conn: Connection, consumed: frozenset[str] | None) -> int:
        if consumed is not None and not consumed:
            return 0
        source = sources_of(Status.QUEUED, among={Status.WAITING})
        where = [status_in(source), c.external.is_(False), c.lease.is_(None)]
        if consumed is not None:
            where.append(c.queue.in_(sorted(consumed)))
        rows = self._move(conn, where, Status.QUEUED, None)
        events = [(r.id, NewEvent(EventType.RESUMED, _consumed_again(r.queue))) for r in rows]
        append_events(conn, self._db.clock(), events)
        return len(rows)

    def _move(
        self, conn: Connection, where: Collection[sa.ColumnElement[bool]], target: Status, why: Any
    ) -> list[Any]:
        pick = sa.select(c.id).where(*where).limit(BATCH).scalar_subquery()
        stmt = (
            jobs.update()
            .where(c.id.in_(pick), *where)
            .values(status=target.value, wait_reason=why, updated_at=self._db.clock())
            .returning(c.id, c.queue, c.wait_reason, c.kind, c.owner, c.attempt)
        )
        rows = list(conn.execute(stmt))
        self._db.after_commit(conn, lambda: _log_moves(target, rows))
        return rows


def _consumed_again(queue: str) -> str:
    return f"a worker consumes queue '{queue}' again"


def _info(row: Any) -> WorkerInfo:
    queues = row["queues"]
    return WorkerInfo(
        id=row["id"],
        engine=row["engine"],
        host=row["host"],
        pid=row["pid"],
        queues=None if queues is None else list(queues),
        kinds=list(row["kinds"] or []),
        concurrency=row["concurrency"],
        running=row["running"],
        started_at=row["started_at"],
        last_seen_at=row["last_seen_at"],
    )


def _log_moves(target: Status, rows: list[Any]) -> None:
    """The journal's lines of parked or released jobs: "waiting", or "queued" again."""
    for r in rows:
        fields = {"job_id": r.id, "kind": r.kind, "owner": r.owner, "attempt": r.attempt}
        journal.changed(target.value, reason=r.wait_reason, queue=r.queue, **fields)
