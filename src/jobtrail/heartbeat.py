"""Heartbeat: one thread per store keeping fresh the heartbeat of every job this process
holds — a worker's claimed and running jobs, work tracked in place, Celery tasks — in one
statement per beat, and telling each job's buffer what it learned (a pending cancel, a job
that is no longer held here)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobtrail.exceptions import StoreError
from jobtrail.logs import logger

if TYPE_CHECKING:
    from jobtrail.progress import ProgressBuffer
    from jobtrail.store.database import Database
    from jobtrail.store.runs import RunStore

log = logger("jobtrail.worker")

LINGER = 5.0
"""Seconds the thread stays after the last job was released (the next one likely comes)."""
TICK = 0.1
"""How often an idle thread looks whether the main thread ended (its cue to stop)."""


@dataclass(frozen=True, slots=True)
class Held:
    """One job kept alive: its lease, its buffer (None while claimed and not started yet),
    and how often its holder asked it be beaten."""

    lease: str
    buffer: ProgressBuffer | None
    interval: float


class Heartbeat:
    """``hold`` a job to keep it alive, ``release`` it when it ends. The thread starts with
    the first job held, beats every (shortest) interval asked for, and stops once nothing is
    held and ``LINGER`` seconds passed or the main thread ended; a forked child starts its
    own."""

    def __init__(self, runs: RunStore, database: Database) -> None:
        self._runs = runs
        self._outage = database.outage
        self._reset()
        database.after_fork.append(self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[str, Held] = {}
        self._thread: threading.Thread | None = None
        self._due = 0.0

    def hold(self, job_id: str, lease: str, buffer: ProgressBuffer | None, interval: float) -> None:
        """Keep ``job_id`` (held under ``lease``) alive until ``release``."""
        with self._cond:
            self._held[job_id] = Held(lease, buffer, interval)
            if self._thread is None:
                self._due = time.monotonic() + interval
                self._thread = threading.Thread(target=self._loop, name="jobtrail-heartbeat")
                self._thread.start()
            elif time.monotonic() + interval < self._due:
                self._due = time.monotonic() + interval
                self._cond.notify_all()

    def release(self, job_id: str) -> None:
        """Stop keeping ``job_id`` alive."""
        with self._cond:
            self._held.pop(job_id, None)

    def beat(self) -> None:
        """Refresh every held job's heartbeat now, in one statement."""
        with self._cond:
            held = dict(self._held)
            shortest = min((h.interval for h in held.values()), default=LINGER)
            self._due = time.monotonic() + shortest
        if not held:
            return
        try:
            beats = self._runs.heartbeat({job_id: h.lease for job_id, h in held.items()})
        except StoreError as exc:
            if not self._outage.noted(exc, "heartbeat"):
                log.warning("heartbeat failed", jobs=len(held), error=str(exc))
            return
        pending = {beat.job_id: beat.cancel_requested for beat in beats}
        for job_id, h in held.items():
            if h.buffer is not None:
                cancel = pending.get(job_id)
                h.buffer.observe(cancel_requested=bool(cancel), held=cancel is not None)

    def _loop(self) -> None:
        while self._wait():
            try:
                self.beat()
            except Exception as exc:  # the beat must outlive any one failure
                log.error("heartbeat failed", error=repr(exc))

    def _wait(self) -> bool:
        """Wait until a beat is due; False (the thread ends) once nothing is held and either
        ``LINGER`` seconds passed or the main thread ended."""
        idle = 0.0
        with self._cond:
            while True:
                if self._held:
                    idle = 0.0
                    left = self._due - time.monotonic()
                    if left <= 0:
                        return True
                    self._cond.wait(min(TICK, left))
                elif idle >= LINGER or not threading.main_thread().is_alive():
                    self._thread = None
                    return False
                else:
                    self._cond.wait(TICK)
                    idle += TICK
