"""The Celery integration's background threads: the records of published tasks written in
shared transactions off the publishing thread, one heartbeat for every task a process runs,
and task outcomes sharing the commits of the worker process that ran them.

Each thread starts on demand, stays while it has work (and ``linger`` seconds after), and is
not a daemon: when the main thread ends it finishes what is pending, then stops, so nothing
queued is lost at exit. A forked child (Celery prefork) starts its own threads and never
writes its parent's pending records.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import groupby

import structlog

from jobtrail.exceptions import InvalidData, StoreError
from jobtrail.jobs import NewJob
from jobtrail.progress import ProgressBuffer
from jobtrail.store.celery_rows import celery_rows
from jobtrail.store.database import Database, outage_retrying
from jobtrail.tracker import Tracker

log = structlog.get_logger("jobtrail.celery")

TICK = 0.1
"""How often an idle thread looks whether the main thread ended (its cue to stop)."""
MAX_BATCH = 500
"""The most published records one transaction writes."""


class Lingering:
    """A thread that runs ``_step`` whenever ``_has_work()``, stays while ``_busy()``, lingers
    up to ``linger`` seconds after, and stops early once the main thread has ended.
    Subclasses hold ``_cond`` while reading or changing their work."""

    def __init__(self, name: str, linger: float) -> None:
        self._name = name
        self._linger = linger
        self._reset()
        _FORKABLE.add(self)

    def _reset(self) -> None:
        """A fresh state (also in a forked child, where the parent's thread does not exist)."""
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def _has_work(self) -> bool:
        raise NotImplementedError

    def _busy(self) -> bool:
        """Whether there is (or will be) work that keeps the thread (default: ``_has_work``)."""
        return self._has_work()

    def _step(self) -> None:
        """Do some work; called without ``_cond`` held."""
        raise NotImplementedError

    def _idle_timeout(self) -> float:
        """How long an idle thread sleeps between looks at its work (at most ``TICK``)."""
        return TICK

    def _wake(self) -> None:
        """Call with ``_cond`` held after adding work: start the thread, or wake it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name)
            self._thread.start()
        else:
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._wait_for_work():
                    self._thread = None
                    self._cond.notify_all()
                    return
            try:
                self._step()
            except Exception as exc:  # never leave work queued for a thread that died
                log.error("a background step failed", thread=self._name, error=repr(exc))

    def _wait_for_work(self) -> bool:
        """Wait (``_cond`` held) until there is work; False once it is time to stop."""
        idle = 0.0
        while not self._has_work():
            if not threading.main_thread().is_alive():
                return False
            idle = 0.0 if self._busy() else idle
            if idle >= self._linger:
                return False
            timeout = self._idle_timeout()
            self._cond.wait(timeout)
            idle += timeout
        return True


_FORKABLE: weakref.WeakSet[Lingering] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for thread in list(_FORKABLE):
        thread._reset()


os.register_at_fork(after_in_child=_reset_after_fork)


class PublishWriter(Lingering):
    """Writes the ``queued`` records of published tasks, many per transaction.

    A record a worker created first (it took the task before its record was written) is
    left as it is: the key ``celery:<task id>`` names one job, so no duplicate is made.
    """

    def __init__(self, linger: float = 1.0) -> None:
        super().__init__("jobtrail-celery-publish", linger)

    def _reset(self) -> None:
        super()._reset()
        self._pending: list[tuple[Tracker, NewJob]] = []
        self._unwritten: set[str] = set()
        self._queued = 0
        self._settled = 0

    def put(self, tracker: Tracker, new: NewJob) -> None:
        """Queue ``new`` for ``tracker``'s store (redacted as it is written)."""
        with self._cond:
            self._pending.append((tracker, new))
            self._unwritten.add(new.id)
            self._queued += 1
            self._wake()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record queued so far is written (or, refused, logged); False if
        ``timeout`` seconds passed first."""
        with self._cond:
            target = self._queued
            return self._cond.wait_for(lambda: self._settled >= target, timeout)

    def settle(self, job_id: str) -> None:
        """Wait until the record of ``job_id`` is written, if it is on its way (a tracker's
        ``settle_hooks``: this process reads what it published)."""
        if job_id in self._unwritten:
            self.flush()

    def _has_work(self) -> bool:
        return bool(self._pending)

    def _step(self) -> None:
        with self._cond:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        try:
            for tracker, group in groupby(batch, key=lambda entry: entry[0]):
                write_published(tracker, [new for _, new in group])
        finally:
            with self._cond:
                self._settled += len(batch)
                self._unwritten.difference_update(new.id for _, new in batch)
                self._cond.notify_all()


def write_published(tracker: Tracker, news: Sequence[NewJob]) -> None:
    """Insert published tasks' records in one transaction, retried through an outage (but
    not once the process is ending: its exit must not wait on a database that is gone);
    when the database refuses one, each is written alone so the others still land."""
    try:
        news = [replace(tracker.redactor.new_job(new), external=True) for new in news]
        add = celery_rows(tracker.store.database).add
        if threading.main_thread().is_alive():
            outage_retrying()(add, news)
        else:
            add(news)
    except InvalidData:
        if len(news) == 1:
            _lost(news[0], "refused by the database")
            return
        for new in news:
            write_published(tracker, [new])
    except StoreError as exc:
        for new in news:
            _lost(new, str(exc))


def _lost(new: NewJob, why: str) -> None:
    # The worker that takes the task still creates its record on sight.
    log.error("the record of a published task was not written", job_id=new.id, error=why)


class HeldBeat(Lingering):
    """Refreshes the heartbeat of every task this process runs, in one statement per store,
    every ``interval`` seconds, and hands each buffer what it learned (a pending cancel, a
    lost job)."""

    def __init__(self, interval: Callable[[], float]) -> None:
        super().__init__("jobtrail-celery-beat", linger=5.0)
        self._interval = interval

    def _reset(self) -> None:
        super()._reset()
        self._held: dict[str, tuple[Tracker, ProgressBuffer]] = {}
        self._due = 0.0

    def hold(self, tracker: Tracker, buffer: ProgressBuffer) -> None:
        """Keep ``buffer``'s job heartbeated until ``release``."""
        with self._cond:
            self._held[buffer.job_id] = (tracker, buffer)
            if self._thread is None:
                self._due = time.monotonic() + self._interval()
                self._wake()

    def release(self, job_id: str) -> None:
        """Stop heartbeating ``job_id``."""
        with self._cond:
            self._held.pop(job_id, None)

    def _has_work(self) -> bool:
        return bool(self._held) and time.monotonic() >= self._due

    def _busy(self) -> bool:
        return bool(self._held)

    def _idle_timeout(self) -> float:
        if not self._held:
            return TICK
        return max(min(TICK, self._due - time.monotonic()), 0.001)

    def _step(self) -> None:
        with self._cond:
            held = list(self._held.values())
            self._due = time.monotonic() + self._interval()
        for tracker, group in groupby(held, key=lambda entry: entry[0]):
            buffers = [buffer for _, buffer in group]
            try:
                beats = tracker.store.runs.heartbeat({b.job_id: b.lease for b in buffers})
            except StoreError as exc:
                if not tracker.store.database.outage.noted(exc, "heartbeat"):
                    log.warning("heartbeat failed", jobs=len(buffers), error=str(exc))
                continue
            pending = {beat.job_id: beat.cancel_requested for beat in beats}
            for buffer in buffers:
                cancel = pending.get(buffer.job_id)
                buffer.observe(cancel_requested=bool(cancel), held=cancel is not None)


class SharedCommits:
    """Task outcomes queued for a commit shared with the process's other writes (the
    database's group commit), in the process that runs tasks — never in a prefork parent,
    whose commit thread its children would not inherit."""

    def __init__(self) -> None:
        self.in_worker = False
        """A worker runs in this process (or its parent, for prefork children)."""
        self._grouped: tuple[int, Database] | None = None
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """Whether outcomes are queued instead of waited for."""
        return self._grouped is not None

    def use(self, database: Database) -> None:
        """Share ``database``'s commits from now on, if a worker runs here."""
        grouped = self._grouped
        if grouped is not None and grouped[0] == os.getpid() and grouped[1] is database:
            return
        with self._lock:  # pool threads start tasks at the same time
            if self._grouped != grouped:
                return
            self.stop()
            if self.in_worker:
                database.start_grouping()
                self._grouped = (os.getpid(), database)

    def stop(self) -> None:
        """Commit what is queued and stop sharing (a forked child has nothing to stop)."""
        grouped, self._grouped = self._grouped, None
        if grouped is not None and grouped[0] == os.getpid():
            grouped[1].stop_grouping()
