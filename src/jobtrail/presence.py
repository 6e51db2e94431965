"""Presence: a worker process's row in the registry of live workers, refreshed by its
heartbeats (``tracker.workers()`` lists the live ones)."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from jobtrail.exceptions import StoreError
from jobtrail.jobs import WorkerInfo

if TYPE_CHECKING:
    from jobtrail.tracker import Tracker

log = structlog.get_logger("jobtrail.worker")


class Presence:
    """One worker's registration: ``announce()`` at start and every heartbeat, ``forget()`` on
    a clean stop. A failed write is logged, never raised: the next heartbeat writes again."""

    def __init__(
        self,
        tracker: Tracker,
        *,
        engine: str,
        queues: Collection[str] | None,
        kinds: Collection[str],
        concurrency: int,
        running: Callable[[], int],
        name: str | None = None,
    ) -> None:
        """``queues`` None or empty: every queue. ``running()``: jobs held now. ``name``: the
        engine's own name of the worker (Celery's ``celery@host``), else host and pid."""
        self.tracker = tracker
        self.host = socket.gethostname()
        self.pid = os.getpid()
        # Unique per worker, several of which may run in one process.
        self.id = f"{name or f'{self.host}:{self.pid}'}:{uuid.uuid4().hex[:8]}"
        self.engine = engine
        self.queues = sorted(queues) if queues else None
        self.kinds = kinds  # read at each announce: kinds may be registered later
        self.concurrency = concurrency
        self.running = running
        self.started_at: datetime = tracker.now()

    def info(self) -> WorkerInfo:
        """This worker as the registry records it now."""
        return WorkerInfo(
            id=self.id,
            engine=self.engine,
            host=self.host,
            pid=self.pid,
            queues=self.queues,
            kinds=sorted(self.kinds),
            concurrency=self.concurrency,
            running=self.running(),
            started_at=self.started_at,
            last_seen_at=self.tracker.now(),
        )

    def announce(self) -> None:
        """Insert or refresh this worker's row."""
        try:
            self.tracker.ops.announce_worker(self.info())
        except StoreError as exc:
            if not self.tracker.store.database.outage.noted(exc, "worker registration"):
                log.warning("worker registration failed", worker=self.id, error=str(exc))

    def forget(self) -> None:
        """Delete this worker's row (a clean stop)."""
        try:
            self.tracker.ops.forget_worker(self.id)
        except StoreError as exc:
            log.warning("worker deregistration failed", worker=self.id, error=str(exc))


class PresenceBeat:
    """A thread announcing a presence every ``interval`` seconds, for engines whose own
    heartbeats jobtrail does not run (Celery): ``start()``, then ``stop()`` on shutdown. Once
    ``alive()`` says the worker is gone (it stopped without telling), the row is deleted."""

    def __init__(
        self, presence: Presence, interval: float, alive: Callable[[], bool] = lambda: True
    ) -> None:
        self.presence = presence
        self.interval = interval
        self.alive = alive
        self._halt = threading.Event()
        # A daemon: a process killed before ``worker_shutdown`` must still exit; its row then
        # only stops being live.
        self._thread = threading.Thread(target=self._loop, name="jobtrail-presence", daemon=True)

    def start(self) -> PresenceBeat:
        """Announce now and keep announcing in the background."""
        self.presence.announce()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop announcing and delete the row."""
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.presence.forget()

    def _loop(self) -> None:
        while not self._halt.wait(self.interval):
            if not self.alive():
                self.presence.forget()
                return
            self.presence.announce()
