"""The maintenance every worker runs on a timer (``serve`` too, through its worker): rescue of
jobs whose runner went silent, the queue watch, expiry, purges — each failure logged and
retried at the next turn, never the end of the thread (and a database that is away logged
once, by its ``Outage``, not once per task and turn)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from jobtrail import journal
from jobtrail.exceptions import StoreError
from jobtrail.logs import logger

if TYPE_CHECKING:
    from jobtrail.kinds import JobKind
    from jobtrail.settings import Settings
    from jobtrail.store import Store
    from jobtrail.store.expiry import ExpiryStore
    from jobtrail.store.outage import Outage
    from jobtrail.store.workers import WorkerStore

log = logger("jobtrail.worker")

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


class Maintenance:
    """The one maintenance thread of a worker (or of a Celery worker's presence): its
    ``Periodic`` tasks run on one timer, looked at every ``step`` seconds, until ``stop``.
    ``daemon``: a process killed before it could stop the thread still exits."""

    def __init__(
        self,
        periodics: list[Periodic],
        step: float,
        *,
        daemon: bool = False,
        name: str = "jobtrail-maintenance",
    ) -> None:
        self.periodics = periodics
        self.step = step
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=daemon)

    def start(self) -> Maintenance:
        """Start the thread; returns at once."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (after the task it is running, if any)."""
        self._halt.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def _loop(self) -> None:
        while not self._halt.wait(self.step):
            for periodic in self.periodics:
                periodic.run_if_due()


def rescue(expiry: ExpiryStore, heartbeat_timeout: float) -> None:
    """Take back held jobs whose heartbeat is older than ``heartbeat_timeout`` seconds."""
    for job in expiry.rescue(heartbeat_timeout):
        state = "failed" if job.terminal else "rescued"
        journal.job_changed(state, job, reason="heartbeat lost", worker=job.worker)


def watch_queues(workers: WorkerStore, heartbeat_timeout: float, outage: Outage) -> None:
    """Park queued jobs no live worker consumes (``waiting``), release them when one does."""
    try:
        watch = workers.watch_queues(heartbeat_timeout)
    except StoreError as exc:
        if not outage.noted(exc, "queue watch"):
            log.warning("queue watch failed", error=str(exc))
        return
    if watch.parked or watch.released:
        log.info("queue watch", waiting=watch.parked, queued_again=watch.released)


def purge_finished(
    store: Store,
    settings: Settings,
    kinds: Iterable[JobKind],
    *,
    batch_size: int = 1000,
    fixed_cap: bool = False,
) -> int:
    """Delete finished jobs past their retention (``settings``, and ``kinds``' own ages),
    with their events and items, in batches; the summaries keep counting them. The cap
    (``retention_max_days``) rises to the longest age in effect unless ``fixed_cap``."""
    from jobtrail.store.retention import RetentionPolicy

    policy = RetentionPolicy.of(settings, store.clock(), batch_size, kinds, fixed_cap)
    # A job leaves the table only once the summaries hold it: roll them up to now first.
    store.summaries.roll_up(lag=timedelta(0))
    return store.retention.purge(policy)


def purge(store: Store, settings: Settings, kinds: Iterable[JobKind]) -> None:
    """Delete finished jobs past their retention, saying how many."""
    deleted = purge_finished(store, settings, kinds)
    if deleted:
        log.info("purged finished jobs", count=deleted)
