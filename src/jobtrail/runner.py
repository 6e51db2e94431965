"""Runner: runs one job's handler and records how it ended — result, retry, failure or stop."""

from __future__ import annotations

import functools
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobtrail import journal
from jobtrail.context import Context
from jobtrail.exceptions import Cancelled, InvalidData, ShuttingDown, StoreError, TimedOut
from jobtrail.jobs import JSON, Job, NewEvent, NewJob
from jobtrail.logs import logger
from jobtrail.progress import ProgressBuffer
from jobtrail.redaction import MAX_ERROR, error_text, shown
from jobtrail.states import EventType, Status
from jobtrail.store.database import outage_retrying

if TYPE_CHECKING:
    from jobtrail.heartbeat import Heartbeat
    from jobtrail.kinds import JobKind
    from jobtrail.redaction import Redactor
    from jobtrail.runtime import Runtime
    from jobtrail.settings import Settings
    from jobtrail.store.runs import Claimed, RunStore

log = logger("jobtrail.runner")

MAX_RETRY_DELAY = 3600.0


def runner_identity() -> str:
    """``host:pid:thread`` of the code running a job."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


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
    try:
        return outage_retrying()(write)
    except StoreError as exc:
        log.error("could not record job outcome", action=action, error=str(exc))
        return False


@dataclass(frozen=True, slots=True)
class Run:
    """One held job: the handler's context and the runner's buffer behind it."""

    ctx: Context
    buffer: ProgressBuffer

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.buffer.job_id


class Runner:
    """Runs handlers of the registered kinds and records their outcome through the store."""

    def __init__(
        self,
        runs: RunStore,
        kinds: Mapping[str, JobKind],
        redactor: Redactor,
        settings: Settings,
        heartbeat: Heartbeat,
        *,
        wait_for_outcomes: bool = True,
    ) -> None:
        """``kinds`` is read at each run (kinds may be registered later);
        ``wait_for_outcomes=False`` (workers): a succeeded job's record is queued for the next
        group commit instead of waited for."""
        self.runs = runs
        self.kinds = kinds
        self.redactor = redactor
        self.settings = settings
        self.heartbeat = heartbeat
        self.wait_for_outcomes = wait_for_outcomes

    @classmethod
    def of(cls, runtime: Runtime, *, wait_for_outcomes: bool = True) -> Runner:
        """The runner of ``runtime``'s kinds, writing to its store."""
        store = runtime.store
        return cls(
            store.runs,
            runtime.registry.kinds,
            runtime.redactor,
            runtime.settings,
            runtime.heartbeat,
            wait_for_outcomes=wait_for_outcomes,
        )

    def hold(
        self,
        job: Job,
        lease: str,
        stopping: threading.Event | None = None,
        only_items: Collection[str] | None = None,
    ) -> Run:
        """The context and buffer a held job's handler runs with."""
        buffer = ProgressBuffer(
            job,
            self.runs,
            lease,
            redactor=self.redactor,
            flush_interval=self.settings.flush_interval,
            max_items=self.settings.max_failed_items,
        )
        return Run(Context(job, buffer, stopping=stopping, only_items=only_items), buffer)

    def take_over(self, job_id: str) -> Run | None:
        """Hold a job another engine dispatched to this process (see ``RunStore.take_over``);
        None when it already ended or does not exist."""
        lease = uuid.uuid4().hex
        job = self.runs.take_over(job_id, lease, runner_identity())
        if job is None:
            return None
        run = self.hold(job, lease)
        journal.held_changed("started", run.buffer, duration=None)
        return run

    def stall_after(self, kind: str) -> float | None:
        """The stall threshold of ``kind``, if it has one."""
        spec = self.kinds.get(kind)
        return None if spec is None else spec.stall_after

    def run(self, claimed: Claimed, run: Run) -> None:
        """Call the handler with the job's payload and record how it ended."""
        spec = self.kinds[claimed.job.kind]
        payload = claimed.job.payload or {}
        journal.held_changed("started", run.buffer, duration=None)
        try:
            result = spec.handler(run.ctx, **payload)
        except InvalidData as exc:
            self.fail(run.buffer, exc)
        except ShuttingDown:
            self.interrupt(run.buffer, "worker shutting down; stopped at a checkpoint")
        except (Cancelled, TimedOut) as exc:
            self.fail(run.buffer, exc)
        except Exception as exc:
            self._retry_or_fail(run.buffer, claimed.job, spec, exc)
        else:
            self.succeed(run.buffer, result)

    def _retry_or_fail(
        self, buffer: ProgressBuffer, job: Job, spec: JobKind, exc: Exception
    ) -> None:
        if job.attempt >= job.max_attempts:
            self.fail(buffer, exc)
            return
        delay = retry_delay(job.attempt, spec.retry_backoff)
        error = buffer.redactor.text(error_text(exc), MAX_ERROR)
        note = (
            f"attempt {job.attempt} of {job.max_attempts} failed ({error}); "
            f"retrying in {delay:.1f} s"
        )
        values = {
            "error_message": error,
            "error_details": buffer.redactor.json(buffer.error_details(exc)),
        }
        self.requeue(buffer, EventType.RETRYING, note, delay=delay, values=values)

    def requeue(
        self,
        buffer: ProgressBuffer,
        event: EventType,
        note: str,
        *,
        delay: float = 0.0,
        charge_attempt: bool = True,
        values: dict[str, JSON] | None = None,
    ) -> bool:
        """Put a held job back in the queue with its pending progress and an ``event``;
        failed items belong to the attempt that failed them and are dropped. Progress the
        database refuses (``InvalidData``) fails the job instead: it would be refused again."""
        progress, events, _items = buffer.take()
        note = buffer.redactor.text(note, MAX_ERROR)
        events.append(NewEvent(event, note))
        write = functools.partial(
            self.runs.requeue,
            buffer.job_id,
            buffer.lease,
            progress,
            events,
            delay=delay,
            charge_attempt=charge_attempt,
            values=values,
        )
        try:
            requeued = _durably(str(event), write)
        except InvalidData as exc:
            return self.fail(buffer, exc)
        if requeued:
            journal.held_changed(str(event), buffer, reason=note, delay=delay)
        return requeued

    def succeed(self, buffer: ProgressBuffer, result: JSON) -> bool:
        """End a job whose code returned: its outcome follows from its items.

        The result is stored cleaned (NUL characters, lone surrogates) with secrets masked; one
        that cannot be stored faithfully (NaN, not JSON) fails the job with the reason instead.
        """
        try:
            stored = buffer.redactor.stored(result)
        except ValueError as exc:
            refused = f"the result could not be stored: {shown(exc)}"
            return _durably("fail", lambda: buffer.finish(Status.FAILED, error_message=refused))
        status = buffer.outcome()
        details = None if status is Status.SUCCEEDED else buffer.error_details(None) or {}
        message = None if details is None else buffer.failure_summary()
        wait = self.wait_for_outcomes
        return _durably(
            "finish",
            lambda: buffer.finish(
                status, result=stored, error_message=message, error_details=details, wait=wait
            ),
        )

    def fail(self, buffer: ProgressBuffer, exc: BaseException) -> bool:
        """End a job whose code raised: ``cancelled`` for a cancel, ``failed`` otherwise."""
        if isinstance(exc, Cancelled):
            reason = exc.reason
            return _durably("cancel", lambda: buffer.finish(Status.CANCELLED, error_message=reason))
        if isinstance(exc, TimedOut):
            timed_out = {"type": "TimedOut", "timeout": exc.timeout}
            return _durably(
                "timeout",
                lambda: buffer.finish(
                    Status.FAILED, error_message=shown(exc), error_details=timed_out
                ),
            )
        error = error_text(exc)
        details = buffer.error_details(exc)
        return _durably(
            "fail",
            lambda: buffer.finish(Status.FAILED, error_message=error, error_details=details),
        )

    def interrupt(self, buffer: ProgressBuffer, reason: str) -> bool:
        """Put a held job back in the queue without charging the attempt."""
        return self.requeue(buffer, EventType.INTERRUPTED, reason, charge_attempt=False)

    @contextmanager
    def in_place(self, new: NewJob) -> Iterator[Context]:
        """Record work that runs in the caller's block as a running job (``new`` as the
        ``Submitter`` prepared it), heartbeated from a thread: it ends from its items when
        the block ends, or ``failed``/``cancelled`` when the block raises (the exception goes
        on)."""
        lease = uuid.uuid4().hex
        job = self.runs.start(new, worker=runner_identity(), lease=lease)
        run = self.hold(job, lease)
        journal.held_changed("created", run.buffer, duration=None)
        journal.held_changed("started", run.buffer, duration=None)
        self.heartbeat.hold(job.id, lease, run.buffer, self.settings.heartbeat_interval)
        try:
            yield run.ctx
        except BaseException as exc:
            self.fail(run.buffer, exc)
            raise
        else:
            self.succeed(run.buffer, None)
        finally:
            self.heartbeat.release(job.id)
