"""Worker: threads that claim, run and record jobs, with heartbeats, rescue and a graceful stop."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, TypedDict

from jobtrail.alerting import Alerting
from jobtrail.courier import Courier
from jobtrail.exceptions import StoreError
from jobtrail.logs import logger
from jobtrail.maintenance import Maintenance, Monotonic, Periodic, purge, rescue, watch_queues
from jobtrail.presence import Presence
from jobtrail.redaction import error_text
from jobtrail.runner import Run, Runner
from jobtrail.scheduler import Scheduler, submit_startup_jobs
from jobtrail.store.runs import Claimed

if TYPE_CHECKING:
    from jobtrail.runtime import Runtime
    from jobtrail.settings import Settings

log = logger("jobtrail.worker")

SHORT_JOB_SECONDS = 0.05
"""Jobs shorter than this on average are claimed ahead of free threads."""
PREFETCH_PER_THREAD = 8
"""How many short jobs per thread one claim takes ahead (one commit feeds them all)."""
COURIER_STOP_SECONDS = 1.0
"""The least a stopping worker waits for its courier (an idle one stops in milliseconds)."""


class WorkerSettings(TypedDict, total=False):
    """Settings a worker may override (``tracker.worker(grace_period=5)``); seconds each."""

    heartbeat_interval: float | None
    heartbeat_timeout: float | None
    grace_period: float | None
    poll_interval: float | None


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs; defaults come from the tracker's settings."""

    concurrency: int
    heartbeat_interval: float
    heartbeat_timeout: float
    grace_period: float
    poll_interval: float
    purge_interval: float = 3600.0
    queues: Collection[str] | None = None
    consume: bool = True
    """False: no runner threads and no registration, only the maintenance (``serve``)."""

    @classmethod
    def of(
        cls, settings: Settings, queues: Iterable[str] | None = None, consume: bool = True
    ) -> WorkerOptions:
        """The options ``settings`` give, for ``queues`` (None: every queue)."""
        return cls(
            consume=consume,
            concurrency=settings.concurrency,
            heartbeat_interval=settings.heartbeat_interval,
            heartbeat_timeout=settings.heartbeat_timeout,
            grace_period=settings.grace_period,
            poll_interval=settings.poll_interval,
            purge_interval=settings.purge_interval,
            queues=None if queues is None else frozenset(queues),
        )


class Worker:
    """Runs the registered kinds in ``concurrency`` threads (none of them daemons).

    Use it as a context manager (background threads, graceful drain on exit) or call
    ``run()`` to block until SIGTERM/SIGINT — or, with ``burst=True``, until nothing is due.
    """

    def __init__(
        self, runtime: Runtime, options: WorkerOptions, monotonic: Monotonic = time.monotonic
    ) -> None:
        """``monotonic`` is the clock of heartbeat, stall and purge timing (tests inject one)."""
        self.runtime = runtime
        self.options = options
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self._clock = monotonic
        store = runtime.store
        self._store = store
        self._database = store.database
        self._runs = store.runs
        self._kinds = runtime.registry.kinds  # read at each use: kinds may come later
        self._runner = Runner.of(runtime, wait_for_outcomes=False)
        self._heartbeat = runtime.heartbeat
        self._scheduler = Scheduler.of(runtime, self.identity)
        self._draining = threading.Event()  # stop claiming; handlers see ShuttingDown
        self._stop_requested = threading.Event()
        self._claim_lock = threading.Lock()
        self._lock = threading.Lock()
        self._prefetched: deque[Claimed] = deque()
        self._running: dict[str, Run] = {}
        self._average_run = SHORT_JOB_SECONDS  # seconds, moving average of handler runs
        self._burst = False
        self._threads: list[threading.Thread] = []
        self._maintenance: Maintenance | None = None
        self._alerting = Alerting.of(runtime, f"{self.identity}:{uuid.uuid4().hex[:8]}")
        self._courier: Courier | None = None
        self._consuming = False
        self.presence = Presence(
            store.workers,
            store.clock,
            self._database.outage,
            engine="jobtrail",
            queues=options.queues,
            kinds=self._kinds,
            concurrency=options.concurrency,
            running=self._holding,
        )

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, burst: bool = False) -> Worker:
        """Start the runner threads and the heartbeat/rescue thread; returns at once."""
        self._burst = burst
        # A worker without kinds claims nothing: it consumes no queue, whatever it was asked.
        self._consuming = self.options.consume and bool(self._kinds)
        if self._consuming:
            self._database.commits.start_grouping()
            self._start_up()
        for n in range(self.options.concurrency if self._consuming else 0):
            thread = threading.Thread(target=self._run_loop, name=f"jobtrail-{n}")
            thread.start()
            self._threads.append(thread)
        self._maintenance = self._maintenance_tasks().start()
        # Webhooks, consuming or not; paced while jobs run here, so they keep their pace.
        if self.runtime.settings.webhook_deliver:
            self._courier = Courier.of(self.runtime, busy=self._busy).start()
        if self._consuming:
            log.info("worker started", worker=self.identity, concurrency=self.options.concurrency)
        else:  # ``serve --no-worker``, or an app without kinds: maintenance only
            log.info("maintenance started (no jobs run here)", worker=self.identity)
        return self

    def stop(self, grace_period: float | None = None) -> None:
        """Stop claiming, let handlers reach a checkpoint, wait up to the grace period, then
        put whatever still runs back in the queue (not charged as an attempt)."""
        grace = self.options.grace_period if grace_period is None else grace_period
        self._draining.set()
        self._database.doorbell.ring()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        self._interrupt_leftovers()
        if self._courier is not None:
            self._courier.stop(max(deadline - time.monotonic(), COURIER_STOP_SECONDS))
        if self._maintenance is not None:
            self._maintenance.stop()
        self._alerting.stop()
        if self._consuming:
            self._database.commits.stop_grouping()
            self.presence.forget()
        log.info("worker stopped", worker=self.identity)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def run(self, burst: bool = False) -> None:
        """Run until SIGTERM/SIGINT (or, with ``burst``, until nothing is due), then stop."""
        with self._signals():
            self.start(burst=burst)
            try:
                while not self._stop_requested.wait(0.1):
                    if burst and not any(t.is_alive() for t in self._threads):
                        break
            finally:
                self.stop()

    def request_stop(self) -> None:
        """Ask ``run()`` to stop (what SIGTERM does)."""
        self._stop_requested.set()
        self._draining.set()
        self._database.doorbell.ring()

    @property
    def alive(self) -> bool:
        """Whether any runner thread is still running a handler."""
        return any(t.is_alive() for t in self._threads)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: FrameType | None) -> None:
            log.info("stop requested", signal=signal.Signals(signum).name)
            self.request_stop()

        previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # -- running ------------------------------------------------------------------------

    def _run_loop(self) -> None:
        database = self._database
        while not self._draining.is_set():
            # Read before the claim: a ring after it is not missed.
            seen = (database.doorbell.rung, database.changes.rung)
            claimed = self._next()
            if claimed is None:
                if self._burst:
                    return
                self._idle(*seen)
                continue
            self._execute(claimed)

    def _idle(self, work: int, changes: int) -> None:
        """Wait until there may be work: at once for work submitted in this process (or a
        stop); for another process's commit, once a read finds a due job of ours; at the
        latest after ``poll_interval`` (jobs whose ``run_after`` came, a watcher that is down)."""
        database = self._database
        database.watch()
        deadline = time.monotonic() + self.options.poll_interval
        while (left := deadline - time.monotonic()) > 0:
            if not database.changes.wait(changes, left):
                return
            if database.doorbell.rung != work or self._draining.is_set():
                return
            changes = database.changes.rung
            if self._due():
                return

    def _due(self) -> bool:
        kinds = list(self._kinds)
        if not kinds:
            return False
        try:
            return self._runs.any_due(kinds, self.options.queues)
        except StoreError:
            return True  # the claim will say what is wrong

    def _next(self) -> Claimed | None:
        with self._claim_lock:
            if not self._prefetched and not self._draining.is_set():
                self._prefetched.extend(self._claim())
            return self._prefetched.popleft() if self._prefetched else None

    def _claim(self) -> list[Claimed]:
        kinds = self._kinds
        if not kinds:
            return []
        with self._lock:
            free = self.options.concurrency - len(self._running)
        # While jobs are short, take a few more than the free threads need, so one commit
        # feeds several jobs; long jobs are claimed one per free thread, leaving the rest
        # to other workers.
        if self._average_run < SHORT_JOB_SECONDS:
            free += self.options.concurrency * PREFETCH_PER_THREAD
        try:
            claimed = self._runs.claim(
                f"{self.identity}:{threading.current_thread().name}",
                uuid.uuid4().hex,
                limit=max(free, 1),
                kinds=list(kinds),
                queues=self.options.queues,
            )
        except StoreError as exc:
            if not self._database.outage.noted(exc, "claim"):
                log.warning("claim failed", error=str(exc))
            return []
        for c in claimed:  # alive from the claim on, though not started yet
            self._heartbeat.hold(c.job.id, c.lease, None, self.options.heartbeat_interval)
        return claimed

    def _hold(self, claimed: Claimed) -> Run:
        return self._runner.hold(claimed.job, claimed.lease, self._draining, claimed.only_items)

    def _execute(self, claimed: Claimed) -> None:
        run = self._hold(claimed)
        interval = self.options.heartbeat_interval
        self._heartbeat.hold(claimed.job.id, claimed.lease, run.buffer, interval)
        with self._lock:
            self._running[claimed.job.id] = run
        started = time.monotonic()
        try:
            self._runner.run(claimed, run)
        except Exception as exc:  # recording failed for good: the rescue rules take the job back
            # Logged as text: a traceback of this error may itself fail to print.
            log.error(
                "could not record a job's outcome", job_id=claimed.job.id, error=error_text(exc)
            )
        finally:
            elapsed = time.monotonic() - started
            self._heartbeat.release(claimed.job.id)
            with self._lock:
                self._running.pop(claimed.job.id, None)
                self._average_run = 0.8 * self._average_run + 0.2 * elapsed

    def _interrupt_leftovers(self) -> None:
        """Requeue jobs still held after the grace period, and claimed jobs never started."""
        with self._claim_lock:
            waiting = list(self._prefetched)
            self._prefetched.clear()
        with self._lock:
            running = list(self._running.values())
        for claimed in waiting:
            buffer = self._hold(claimed).buffer
            self._runner.interrupt(buffer, "worker stopped before the job started")
            self._heartbeat.release(claimed.job.id)
        for run in running:
            self._runner.interrupt(run.buffer, "worker stopped; grace period over")
            self._heartbeat.release(run.job_id)

    # -- maintenance: registration, rescue, stalls ---------------------------------------

    def _maintenance_tasks(self) -> Maintenance:
        """This worker's registration, rescue, queue watch, stalls, expiry and the summaries'
        roll-up every heartbeat interval; schedule ticks every second; a purge every purge
        interval; the alert rules every alert interval. Any one failing is logged, retried later."""
        o = self.options
        clock, outage = self._clock, self._database.outage
        alert_interval = self.runtime.settings.alert_interval
        each_beat = (self._announce, self._rescue, self._watch_queues, self._watch_stalls)
        store_upkeep = (self._store.expiry.expire, self._store.summaries.roll_up)
        tasks = [
            Periodic(clock, o.heartbeat_interval, (*each_beat, *store_upkeep), outage),
            Periodic(clock, min(1.0, o.heartbeat_interval), (self._tick,), outage),
            Periodic(clock, o.purge_interval, (self._purge,), outage, min(60.0, o.purge_interval)),
            Periodic(clock, alert_interval, (self._alerting.evaluate,), outage),
        ]
        step = min(1.0, o.heartbeat_interval, alert_interval)
        return Maintenance(tasks, step)

    def _rescue(self) -> None:
        rescue(self._store.expiry, self.options.heartbeat_timeout)

    def _watch_queues(self) -> None:
        timeout = self.runtime.settings.heartbeat_timeout
        watch_queues(self._store.workers, timeout, self._database.outage)

    def _purge(self) -> None:
        purge(self._store, self.runtime.settings, self._kinds.values())

    def _tick(self) -> None:
        if self._consuming:  # schedules fire from workers that run jobs
            self._scheduler.tick()

    def _start_up(self) -> None:
        """Register this worker, release the jobs that waited for its queues, store schedule
        definitions and submit the startup jobs."""
        self.presence.announce()
        self._watch_queues()
        try:
            self._scheduler.register()
            window = self.runtime.settings.startup_window
            submit_startup_jobs(self.runtime.registry, self.runtime.submitter, window)
        except StoreError as exc:
            log.warning("startup tasks failed", error=str(exc))

    def _busy(self) -> bool:
        """Whether every runner thread is taken, or jobs wait claimed ahead: the courier
        paces itself while it is so (a worker with a thread free delivers at full speed)."""
        with self._lock:
            full = len(self._running) >= self.options.concurrency
        return full or bool(self._prefetched)

    def _holding(self) -> int:
        with self._lock:
            return len(self._running)

    def _announce(self) -> None:
        """Refresh this worker's row in the registry (its jobs' heartbeats are the
        ``Heartbeat``'s, beaten from the claim on)."""
        if self._consuming:
            self.presence.announce()

    def _watch_stalls(self) -> None:
        with self._lock:
            running = [r.buffer for r in self._running.values()]
        for buffer in running:
            stall_after = self._runner.stall_after(buffer.kind)
            quiet = time.monotonic() - buffer.last_moved
            if stall_after is not None and quiet >= stall_after:
                self._runs.mark_stalled(buffer.job_id, buffer.lease, quiet)
