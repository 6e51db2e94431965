"""The maintenance every worker runs on a timer (``serve`` too, through its worker): rescue of
jobs whose runner went silent, the queue watch, expiry, purges — each failure logged and
retried at the next turn, never the end of the thread (and a database that is away logged
once, by its ``Outage``, not once per task and turn)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from jobtrail import journal
from jobtrail.exceptions import StoreError

if TYPE_CHECKING:
    from jobtrail.store.outage import Outage
    from jobtrail.tracker import Tracker

log = structlog.get_logger("jobtrail.worker")

Monotonic = Callable[[], float]


class Periodic:
    """Tasks run together every ``interval`` seconds by the maintenance thread."""

    def __init__(
        self,
        clock: Monotonic,
        interval: float,
        tasks: tuple[Callable[[], object], ...],
        outage: Outage,
        first_delay: float = 0.0,
    ) -> None:
        self.clock = clock
        self.interval = interval
        self.tasks = tasks
        self.outage = outage
        self.due = clock() + (first_delay or interval)

    def run_if_due(self) -> None:
        if self.clock() < self.due:
            return
        self.due = self.clock() + self.interval
        for task in self.tasks:
            name = getattr(task, "__name__", repr(task))
            try:
                task()
            except StoreError as exc:  # its message says it all; a traceback adds nothing
                if not self.outage.noted(exc, name):
                    log.warning("maintenance task failed", task=name, error=str(exc))
            except Exception:  # the heartbeat thread must outlive any one failure
                log.exception("maintenance task failed", task=name)


def rescue(tracker: Tracker, heartbeat_timeout: float) -> None:
    """Take back held jobs whose heartbeat is older than ``heartbeat_timeout`` seconds."""
    for job in tracker.store.expiry.rescue(heartbeat_timeout):
        state = "failed" if job.terminal else "rescued"
        journal.job_changed(state, job, reason="heartbeat lost", worker=job.worker)


def watch_queues(tracker: Tracker) -> None:
    """Park queued jobs no live worker consumes (``waiting``), release them when one does."""
    try:
        watch = tracker.ops.watch_queues()
    except StoreError as exc:
        if not tracker.store.database.outage.noted(exc, "queue watch"):
            log.warning("queue watch failed", error=str(exc))
        return
    if watch.parked or watch.released:
        log.info("queue watch", waiting=watch.parked, queued_again=watch.released)


def purge(tracker: Tracker) -> None:
    """Delete finished jobs past their retention."""
    deleted = tracker.purge()
    if deleted:
        log.info("purged finished jobs", count=deleted)
