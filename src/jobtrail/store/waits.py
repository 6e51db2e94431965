"""Waits: a runner shows the job it holds ``waiting`` with a reason (``ctx.wait``), keeping its
lease, and makes it ``running`` again when the handler reports again."""

from __future__ import annotations

from typing import Any

from jobtrail.jobs import NewEvent
from jobtrail.states import HELD, EventType, Status, sources_of
from jobtrail.store.database import Database
from jobtrail.store.statements import Prepared, RawSession, Statements, param, status_in
from jobtrail.store.tables import jobs

c = jobs.c


class Waits:
    """The writes of a runner whose job waits; each names the runner's lease (part of
    ``RunStore``, as ``runs.waits``)."""

    def __init__(self, database: Database, statements: Statements) -> None:
        self._db = database
        self._statements = statements
        dialect = database.engine.dialect
        key = (c.id == param(c.id), c.lease == param(c.lease))
        now = param(c.updated_at, "now")
        values = {"wait_reason": param(c.wait_reason), "updated_at": now}
        self._wait = Prepared(
            jobs.update()
            .where(*key, status_in(sources_of(Status.WAITING, among=HELD)))
            .values(status=Status.WAITING.value, **values),
            dialect,
        )
        # Waiting already: no status change, another reason.
        self._rewait = Prepared(
            jobs.update().where(*key, status_in({Status.WAITING})).values(**values), dialect
        )
        self._resume = Prepared(
            jobs.update()
            .where(*key, status_in(sources_of(Status.RUNNING, among={Status.WAITING})))
            .values(status=Status.RUNNING.value, wait_reason=None, updated_at=now),
            dialect,
        )

    def wait(self, job_id: str, lease: str, reason: str) -> bool:
        """Show a held job ``waiting`` with ``reason`` (a ``waiting`` event); False (nothing
        written) once the runner lost it."""
        now = self._db.clock()
        params = {"id": job_id, "lease": lease, "now": now, "wait_reason": reason}
        event = NewEvent(EventType.WAITING, reason)
        return self._write((self._wait, self._rewait), params, event)

    def resume(self, job_id: str, lease: str) -> bool:
        """A held ``waiting`` job is ``running`` again (a ``resumed`` event); False if it was
        not waiting or the runner lost it."""
        params = {"id": job_id, "lease": lease, "now": self._db.clock()}
        event = NewEvent(EventType.RESUMED, "running again")
        return self._write((self._resume,), params, event)

    def _write(self, tried: tuple[Prepared, ...], params: dict[str, Any], event: NewEvent) -> bool:
        """Run the first of ``tried`` that changes the row, with ``event``; False if none."""
        statements = self._statements

        def write(session: RawSession) -> bool:
            if not any(session.rowcount(s, params) == 1 for s in tried):
                return False
            statements.append(session, params["now"], [(params["id"], event)])
            return True

        return self._db.commits.run_write(write)
