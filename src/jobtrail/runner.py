"""Runner: runs one job's handler and records how it ended — result, retry, failure or stop."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from jobtrail.context import Context
from jobtrail.exceptions import Cancelled, InvalidData, ShuttingDown, StoreError, TimedOut
from jobtrail.jobs import JSON, EventType, Status
from jobtrail.store.records import NewEvent
from jobtrail.store.runs import Claimed

if TYPE_CHECKING:
    from jobtrail.kinds import JobKind
    from jobtrail.store.sql import Store
    from jobtrail.tracker import Tracker

log = structlog.get_logger("jobtrail.runner")

MAX_RETRY_DELAY = 3600.0
STORE_RETRY_SECONDS = 30.0


def retry_delay(attempt: int, base: float) -> float:
    """Exponential backoff with full jitter: up to ``base * 2**(attempt-1)``, capped."""
    ceiling = min(base * 2 ** max(attempt - 1, 0), MAX_RETRY_DELAY)
    return random.uniform(ceiling / 2, ceiling)


def _durably(action: str, write: Callable[[], bool]) -> bool:
    """Run a store write, retrying through a database outage so an outcome is never lost."""
    try:
        return write()  # the common case, without building a retry loop
    except StoreError as exc:
        log.warning("recording a job outcome failed; retrying", action=action, error=str(exc))
    retrying = Retrying(
        retry=retry_if_exception_type(StoreError),
        wait=wait_exponential_jitter(multiplier=0.1, max=5.0),
        stop=stop_after_delay(STORE_RETRY_SECONDS),
        reraise=True,
    )
    try:
        return retrying(write)
    except StoreError as exc:
        log.error("could not record job outcome", action=action, error=str(exc))
        return False


class Runner:
    """Runs handlers of a tracker's kinds and records their outcome through the store."""

    def __init__(self, tracker: Tracker, *, wait_for_outcomes: bool = True) -> None:
        """``wait_for_outcomes=False`` (workers): a succeeded job's record is queued for the
        next group commit instead of waited for."""
        self.tracker = tracker
        self.store = tracker.store
        self.wait_for_outcomes = wait_for_outcomes

    def context(self, claimed: Claimed, stopping: threading.Event | None = None) -> Context:
        """The ``Context`` a claimed job's handler runs with."""
        return Context(
            claimed.job,
            self.store,
            claimed.lease,
            redactor=self.tracker.redactor,
            flush_interval=self.tracker.settings.flush_interval,
            stopping=stopping,
            only_items=claimed.only_items,
        )

    def stall_after(self, kind: str) -> float | None:
        """The stall threshold of ``kind``, if it has one."""
        spec = self.tracker.kinds.get(kind)
        return None if spec is None else spec.stall_after

    def run(self, claimed: Claimed, ctx: Context) -> None:
        """Call the handler with the job's payload and record how it ended."""
        spec = self.tracker.kinds[claimed.job.kind]
        payload = claimed.job.payload or {}
        try:
            result = spec.handler(ctx, **payload)
            if "\\u0000" in json.dumps(result, allow_nan=False):
                raise InvalidData("the result contains NUL characters")
        except InvalidData as exc:
            self.fail(ctx, exc)
        except ShuttingDown:
            self.interrupt(ctx, claimed.lease, "worker shutting down; stopped at a checkpoint")
        except (Cancelled, TimedOut) as exc:
            self.fail(ctx, exc)
        except Exception as exc:
            self._retry_or_fail(ctx, claimed, spec, exc)
        else:
            self.succeed(ctx, result)

    def _retry_or_fail(self, ctx: Context, claimed: Claimed, spec: JobKind, exc: Exception) -> None:
        job = claimed.job
        if job.attempt >= job.max_attempts:
            self.fail(ctx, exc)
            return
        delay = retry_delay(job.attempt, spec.retry_backoff)
        error = f"{type(exc).__name__}: {exc}"
        progress, events, _items = ctx.take()  # failed items are per attempt; events stay
        message = (
            f"attempt {job.attempt} of {job.max_attempts} failed ({error}); "
            f"retrying in {delay:.1f} s"
        )
        events.append(NewEvent(EventType.RETRYING, self.tracker.redactor.text(message, 4096)))
        values = {
            "error_message": self.tracker.redactor.text(error, 4096),
            "error_details": self.tracker.redactor.json(ctx.error_details(exc)),
        }
        log.warning("job failed; retrying", job_id=job.id, kind=job.kind, delay=delay, error=error)
        _durably(
            "retry",
            lambda: self.store.requeue(
                job.id, claimed.lease, progress, events, delay=delay, values=values
            ),
        )

    def succeed(self, ctx: Context, result: JSON) -> bool:
        """End a job whose code returned: its outcome follows from its items.

        A result the database refuses (e.g. text with NUL characters on PostgreSQL) fails
        the job with the reason instead of leaving it running.
        """
        status = ctx.outcome()
        details = None if status is Status.SUCCEEDED else ctx.error_details(None) or {}
        message = None if details is None else ctx.failure_summary()
        wait = self.wait_for_outcomes
        try:
            return _durably(
                "finish",
                lambda: ctx.finish(
                    status, result=result, error_message=message, error_details=details, wait=wait
                ),
            )
        except InvalidData as exc:
            refused = f"the result could not be stored: {exc.reason}"
            return _durably("fail", lambda: ctx.finish(Status.FAILED, error_message=refused))

    def fail(self, ctx: Context, exc: BaseException) -> bool:
        """End a job whose code raised: ``cancelled`` for a cancel, ``failed`` otherwise."""
        if isinstance(exc, Cancelled):
            return _durably(
                "cancel", lambda: ctx.finish(Status.CANCELLED, error_message=exc.reason)
            )
        if isinstance(exc, TimedOut):
            timed_out = {"type": "TimedOut", "timeout": exc.timeout}
            return _durably(
                "timeout",
                lambda: ctx.finish(Status.FAILED, error_message=str(exc), error_details=timed_out),
            )
        error = f"{type(exc).__name__}: {exc}"
        details = ctx.error_details(exc)
        return _durably(
            "fail", lambda: ctx.finish(Status.FAILED, error_message=error, error_details=details)
        )

    def interrupt(self, ctx: Context, lease: str, reason: str) -> bool:
        """Put a held job back in the queue without charging the attempt."""
        progress, events, _items = ctx.take()
        events.append(NewEvent(EventType.INTERRUPTED, reason))
        log.info("job interrupted", job_id=ctx.job_id, kind=ctx.kind, reason=reason)
        return _durably(
            "interrupt",
            lambda: self.store.requeue(ctx.job_id, lease, progress, events, charge_attempt=False),
        )


class Heartbeat:
    """Keeps one job's heartbeat fresh from a thread while code runs it in place."""

    def __init__(self, ctx: Context, store: Store, lease: str, interval: float) -> None:
        self._ctx = ctx
        self._store = store
        self._lease = lease
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"jobtrail-beat-{ctx.job_id}")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                beats = self._store.heartbeat({self._ctx.job_id: self._lease})
            except StoreError as exc:
                log.warning("heartbeat failed", job_id=self._ctx.job_id, error=str(exc))
                continue
            cancel = bool(beats and beats[0].cancel_requested)
            self._ctx.observe(cancel_requested=cancel, held=bool(beats))
