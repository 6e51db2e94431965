"""Presence: a worker process's row in the registry of live workers, refreshed by its
heartbeats (``tracker.workers()`` lists the live ones)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING

from jobtrail.exceptions import StoreError
from jobtrail.jobs import WorkerInfo
from jobtrail.logs import logger

if TYPE_CHECKING:
    from jobtrail.store.database import Clock
    from jobtrail.store.outage import Outage
    from jobtrail.store.workers import WorkerStore

log = logger("jobtrail.worker")


class Presence:
    """One worker's registration: ``announce()`` at start and every heartbeat, ``forget()`` on
    a clean stop. A failed write is logged, never raised: the next heartbeat writes again."""

    def __init__(
        self,
        workers: WorkerStore,
        clock: Clock,
        outage: Outage,
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
        self.workers = workers
        self.clock = clock
        self.outage = outage
        self.host = socket.gethostname()
        self.pid = os.getpid()
        # Unique per worker, several of which may run in one process.
        self.id = f"{name or f'{self.host}:{self.pid}'}:{uuid.uuid4().hex[:8]}"
        self.engine = engine
        self.queues = sorted(queues) if queues else None
        self.kinds = kinds  # read at each announce: kinds may be registered later
        self.concurrency = concurrency
        self.running = running
        self.started_at: datetime = clock()

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
            last_seen_at=self.clock(),
        )

    def announce(self) -> None:
        """Insert or refresh this worker's row."""
        try:
            self.workers.announce(self.info())
        except StoreError as exc:
            if not self.outage.noted(exc, "worker registration"):
                log.warning("worker registration failed", worker=self.id, error=str(exc))

    def forget(self) -> None:
        """Delete this worker's row (a clean stop)."""
        try:
            self.workers.forget(self.id)
        except StoreError as exc:
            log.warning("worker deregistration failed", worker=self.id, error=str(exc))
