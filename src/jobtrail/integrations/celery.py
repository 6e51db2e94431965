"""Celery integration: every tracked task becomes a jobtrail job whose id is the task id.

``install(app, tracker)`` connects Celery's signals; tasks built on ``TrackedTask`` (or every
task with ``track_all=True``) are created ``queued`` when published, ``running`` when a
worker starts them, and end ``succeeded``/``partial``/``failed``/``cancelled`` — the same
records, events and transitions as jobs run by jobtrail's own worker. Celery's states are
mapped here, at the edge, onto jobtrail's vocabulary.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, Task, signals

from jobtrail.context import Context, ItemScope
from jobtrail.exceptions import Cancelled, IllegalTransition, JobNotFound
from jobtrail.jobs import JSON, EventType, Job, Priority, Status
from jobtrail.runner import Heartbeat, Runner
from jobtrail.store.records import NewEvent, NewJob
from jobtrail.store.sql import Store
from jobtrail.tracker import Tracker

ENGINE_LABEL = {"engine": "celery"}
CELERY_STATES: dict[str, Status] = {
    "PENDING": Status.QUEUED,
    "RECEIVED": Status.QUEUED,
    "RETRY": Status.QUEUED,
    "STARTED": Status.RUNNING,
    "SUCCESS": Status.SUCCEEDED,
    "FAILURE": Status.FAILED,
    "REVOKED": Status.CANCELLED,
}
"""Celery's task states in jobtrail's vocabulary (for code that reads Celery results)."""

# Celery priorities run 0 (lowest) to 9 (highest) on Redis with priority queues enabled.
CELERY_PRIORITY = {Priority.LOW: 0, Priority.NORMAL: 3, Priority.HIGH: 6, Priority.URGENT: 9}
OWNER_HEADER = "jobtrail_owner"
TRIGGER_HEADER = "jobtrail_trigger"


def priority_of(value: Any) -> Priority:
    """jobtrail's priority for a Celery message priority (0–9)."""
    if not isinstance(value, int):
        return Priority.NORMAL
    return max((p for p, n in CELERY_PRIORITY.items() if value >= n), key=lambda p: p.rank)


@dataclass
class _Run:
    """A tracked task running in this worker process."""

    ctx: Context
    lease: str
    stack: ExitStack
    error: BaseException | None = None
    skipped: bool = False


@dataclass
class CeleryTracking:
    """The signal handlers that mirror one Celery app's tasks into one tracker."""

    app: Celery
    tracker: Tracker
    track_all: bool = False
    _runs: dict[str, _Run] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def runner(self) -> Runner:
        return Runner(self.tracker)

    def tracked(self, task: Any) -> bool:
        """Whether ``task`` (a task or a task name) is mirrored into jobtrail."""
        if isinstance(task, str):
            task = self.app.tasks.get(task)
        return self.track_all or isinstance(task, TrackedTask)

    def run_of(self, task_id: str) -> _Run | None:
        with self._lock:
            return self._runs.get(task_id)

    # -- publishing ---------------------------------------------------------------------

    def on_publish(self, sender: str, headers: dict[str, Any], body: Any, **kw: Any) -> None:
        """A task was sent: its job is created ``queued`` (retries reuse the job)."""
        if not self.tracked(sender) or headers.get("retries", 0):
            return
        properties: dict[str, Any] = kw.get("properties") or {}
        self.tracker.store.add_or_get(
            [self._new_job(headers["id"], sender, headers, body, properties.get("priority"))]
        )

    def _new_job(
        self, task_id: str, name: str, headers: dict[str, Any], body: Any, priority: Any
    ) -> NewJob:
        return NewJob(
            id=task_id,
            key=f"celery:{task_id}",
            kind=name,
            payload=_payload(body),
            owner=headers.get(OWNER_HEADER),
            trigger=str(headers.get(TRIGGER_HEADER) or "api"),
            priority=priority_of(priority),
            labels=ENGINE_LABEL,
            max_attempts=1 + int(getattr(self.app.tasks.get(name), "max_retries", 0) or 0),
        )

    # -- running ------------------------------------------------------------------------

    def on_prerun(self, task_id: str, task: Task[Any, Any], **kw: Any) -> None:
        """A worker starts the task: its job becomes ``running`` (created on first sight)."""
        if task.app is not self.app or not self.tracked(task):
            return  # another app's task (several apps can live in one process)
        store = self.tracker.store
        lease = uuid.uuid4().hex
        worker = f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"
        job = store.take_over(task_id, lease, worker)
        if job is None and not _exists(store, task_id):
            # Published before jobtrail saw it (or by another service): create it on sight.
            headers = {OWNER_HEADER: getattr(task.request, OWNER_HEADER, None)}
            body = (kw.get("args") or (), kw.get("kwargs") or {})
            store.add_or_get([self._new_job(task_id, task.name, headers, body, None)])
            job = store.take_over(task_id, lease, worker)
        if job is None:  # it ended already (e.g. cancelled while queued): never run it again
            with self._lock:
                self._runs[task_id] = _Run(
                    _detached(self.tracker, task_id), lease, ExitStack(), skipped=True
                )
            return
        ctx = Context(
            job,
            store,
            lease,
            redactor=self.tracker.redactor,
            flush_interval=self.tracker.settings.flush_interval,
        )
        stack = ExitStack()
        stack.enter_context(Heartbeat(ctx, store, lease, self.tracker.settings.heartbeat_interval))
        with self._lock:
            self._runs[task_id] = _Run(ctx, lease, stack)

    def on_failure(self, task_id: str, exception: BaseException, **kw: Any) -> None:
        """Remember the error; ``postrun`` records the outcome."""
        run = self.run_of(task_id)
        if run is not None:
            run.error = exception

    def on_retry(self, request: Any, reason: Any, **kw: Any) -> None:
        """The task asked to be retried: its job goes back to ``queued`` with a ``retrying``
        event (the attempt that failed is kept in the history)."""
        run = self.run_of(request.id)
        if run is None or run.skipped:
            return
        run.error = None
        progress, events, _items = run.ctx.take()
        events.append(NewEvent(EventType.RETRYING, self.tracker.redactor.text(str(reason), 4096)))
        self.tracker.store.requeue(run.ctx.job_id, run.lease, progress, events)
        run.skipped = True  # recorded; postrun has nothing more to write

    def on_postrun(
        self, task_id: str, task: Task[Any, Any], retval: Any, state: str, **kw: Any
    ) -> None:
        """The task returned or raised: record how it ended, once."""
        with self._lock:
            run = self._runs.pop(task_id, None)
        if run is None:
            return
        try:
            if run.skipped:
                return
            if run.error is not None:
                self.runner.fail(run.ctx, run.error)
            else:
                self.runner.succeed(run.ctx, _json(retval))
        finally:
            run.stack.close()

    def on_revoked(self, request: Any, **kw: Any) -> None:
        """Revoked before it ran (or terminated): the job ends ``cancelled``."""
        task_id = getattr(request, "id", None)
        if task_id is None:
            return
        run = self.run_of(task_id)
        if run is not None:
            run.error = Cancelled(task_id, "revoked")
            return
        with suppress(IllegalTransition, JobNotFound):  # it ended already, or was never tracked
            self.tracker.store.transition(
                task_id,
                Status.CANCELLED,
                events=[NewEvent(EventType.CANCELLED, "revoked in Celery")],
            )

    def revoke(self, job: Job) -> None:
        """jobtrail cancelled a Celery job: revoke the task too (a running task also stops at
        its next checkpoint)."""
        if job.labels.get("engine") == ENGINE_LABEL["engine"]:
            self.app.control.revoke(job.id)

    def connect(self) -> None:
        """Connect the handlers to Celery's signals (weakly: keep this object alive)."""
        signals.before_task_publish.connect(self.on_publish, weak=False)
        signals.task_prerun.connect(self.on_prerun, weak=False)
        signals.task_failure.connect(self.on_failure, weak=False)
        signals.task_retry.connect(self.on_retry, weak=False)
        signals.task_postrun.connect(self.on_postrun, weak=False)
        signals.task_revoked.connect(self.on_revoked, weak=False)
        self.tracker.cancel_hooks.append(self.revoke)


def install(app: Celery, tracker: Tracker, *, track_all: bool = False) -> CeleryTracking:
    """Mirror ``app``'s tracked tasks into ``tracker`` (``track_all``: every task)."""
    tracking = CeleryTracking(app, tracker, track_all)
    tracking.connect()
    app.jobtrail = tracking  # type: ignore[attr-defined]
    return tracking


def tracking_of(app: Celery) -> CeleryTracking:
    """The tracking ``install`` attached to ``app``."""
    tracking: CeleryTracking | None = getattr(app, "jobtrail", None)
    if tracking is None:
        raise RuntimeError("jobtrail.integrations.celery.install() was not called for this app")
    return tracking


class TrackedTask(Task):  # type: ignore[type-arg]
    """A Celery task base whose runs are jobtrail jobs, with ``Context``-like reporting.

    ``@app.task(base=TrackedTask, bind=True)`` then ``self.progress(…)``, ``self.set_total(n)``,
    ``with self.item(id): …``, ``self.check()`` inside the task.
    """

    def _run(self) -> _Run | None:
        tracking: CeleryTracking | None = getattr(self.app, "jobtrail", None)
        task_id = self.request.id
        return None if tracking is None or task_id is None else tracking.run_of(task_id)

    @property
    def ctx(self) -> Context:
        """The job's context for the current run."""
        run = self._run()
        if run is None:
            raise RuntimeError("jobtrail.integrations.celery.install() was not called")
        return run.ctx

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        run = self._run()
        if run is not None and run.skipped:
            return None  # the job already ended (cancelled, or finished by an earlier delivery)
        return super().__call__(*args, **kwargs)

    def progress(
        self, percent: float | None = None, message: str | None = None, **data: JSON
    ) -> None:
        """Like ``Context.progress``."""
        self.ctx.progress(percent, message, **data)

    def set_total(self, total: int) -> None:
        """Like ``Context.set_total``."""
        self.ctx.set_total(total)

    def advance(self, n: int = 1) -> None:
        """Like ``Context.advance``."""
        self.ctx.advance(n)

    def item(self, item_id: object) -> ItemScope:
        """Like ``Context.item``."""
        return self.ctx.item(item_id)

    def items(self, iterable: Any, key: Any = str) -> Iterator[Any]:
        """Like ``Context.items``."""
        return self.ctx.items(iterable, key)

    def check(self) -> None:
        """Like ``Context.check``: raises ``Cancelled`` once jobtrail cancelled the job."""
        self.ctx.check()


def _payload(body: Any) -> JSON:
    """``{"args": …, "kwargs": …}`` from a protocol-2 message body, JSON-safe."""
    args, kwargs = (
        (body[0], body[1]) if isinstance(body, list | tuple) and len(body) >= 2 else ((), {})
    )
    return _json({"args": list(args), "kwargs": dict(kwargs)})


def _json(value: Any) -> JSON:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return repr(value)


def _exists(store: Store, job_id: str) -> bool:
    try:
        store.get(job_id)
    except JobNotFound:
        return False
    return True


def _detached(tracker: Tracker, task_id: str) -> Context:
    """A context for a task whose job already ended: every write to it is ignored."""
    job = tracker.get(task_id)
    return Context(job, tracker.store, "", redactor=tracker.redactor)
