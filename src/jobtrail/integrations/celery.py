"""Celery integration: every tracked task becomes a jobtrail job whose id is the task id.

``install(app, tracker)`` connects Celery's signals; tasks built on ``TrackedTask`` (or every
task with ``track_all=True``) are created ``queued`` when published, ``running`` when a
worker starts them, and end ``succeeded``/``partial``/``failed``/``cancelled`` — the same
records, events and transitions as jobs run by jobtrail's own worker. Celery's states are
mapped here, at the edge, onto jobtrail's vocabulary. A cancel reaches a task through the
database, whichever process made it: a task whose job already ended is not run (Celery's
``Ignore``, recorded ``REVOKED`` when the job was cancelled), and a running one stops at its
next checkpoint — ``update_state`` included.

Publishing does not wait for the database: the ``queued`` records of published tasks are
written from the store's write-behind queue, many per transaction, within milliseconds; any
read of the store in the publishing process waits for them first (``flush()`` waits too,
e.g. before handing an id to another process; they are flushed at exit). A worker that takes
a task before its record is written creates the record itself, ``running``; the publisher's
write then finds it and adds nothing, so each task has exactly one record and one history.
"""

from __future__ import annotations

import threading
import uuid
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any

from jobtrail import journal
from jobtrail.exceptions import (
    Cancelled,
    IllegalTransition,
    JobNotFound,
    MissingExtra,
    StoreError,
)
from jobtrail.jobs import Job, NewJob
from jobtrail.runner import Run, Runner, runner_identity
from jobtrail.runtime import Runtime
from jobtrail.states import EventType, Status
from jobtrail.tracker import Tracker

try:
    from celery import Celery, Task, signals
except ImportError as exc:
    raise MissingExtra("celery", "jobtrail.integrations.celery", ["celery"]) from exc

# Loaded once celery is known to be installed.
from jobtrail.integrations.celery_background import SharedCommits, publish_soon, write_published
from jobtrail.integrations.celery_messages import (
    CELERY_PRIORITY,
    OWNER_HEADER,
    TRIGGER_HEADER,
    json_safe,
    payload_of,
    priority_of,
    queue_of,
    serves_zero_first,
)
from jobtrail.integrations.celery_presence import CeleryPresence
from jobtrail.integrations.celery_task import META_KEYS, TaskRun, TrackedTask, report_meta
from jobtrail.logs import logger

__all__ = [
    "CELERY_PRIORITY",
    "CELERY_STATES",
    "ENGINE_LABEL",
    "META_KEYS",
    "OWNER_HEADER",
    "TRIGGER_HEADER",
    "CeleryTracking",
    "TrackedTask",
    "install",
    "priority_of",
    "queue_of",
    "report_meta",
    "serves_zero_first",
    "tracking_of",
]

log = logger("jobtrail.celery")

ENGINE_LABEL = {"engine": "celery"}
RETRY_RECORD_TIMEOUT = 10.0
"""The longest a retry waits for the run that sent it to record the retry (same process)."""
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


@dataclass
class CeleryTracking:
    """The signal handlers that mirror one Celery app's tasks into one tracker."""

    app: Celery
    tracker: Tracker
    track_all: bool = False
    batch_publish: bool = True
    """Write published tasks' records from a background thread (False: before publishing)."""
    _tasks: dict[str, TaskRun] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _commits: SharedCommits = field(default_factory=SharedCommits)

    @property
    def runtime(self) -> Runtime:
        """The parts tasks run with: the tracker's, as its worker's."""
        return self.tracker.runtime

    @property
    def runner(self) -> Runner:
        """Inside a worker the outcome of a task is queued for a commit shared with this
        process's other writes, so the next task starts at once (written before exit)."""
        return Runner.of(self.runtime, wait_for_outcomes=not self._commits.shared)

    def tracked(self, task: Any) -> bool:
        """Whether ``task`` (a task or a task name) is mirrored into jobtrail."""
        if isinstance(task, str):
            task = self.app.tasks.get(task)
        return self.track_all or isinstance(task, TrackedTask)

    def task_of(self, task_id: str) -> TaskRun | None:
        """The tracked run of ``task_id`` in this process, if any."""
        with self._lock:
            return self._tasks.get(task_id)

    # -- publishing ---------------------------------------------------------------------

    def on_publish(self, sender: str, headers: dict[str, Any], body: Any, **kw: Any) -> None:
        """A task is being sent: its job is created ``queued`` (retries reuse the job), by the
        background writer unless ``batch_publish`` is off."""
        if not self.tracked(sender):
            return
        if headers.get("retries", 0):  # a retry reuses the job (``on_retry`` requeues it)
            self._retry_sent(headers["id"])
            return
        properties: dict[str, Any] = kw.get("properties") or {}
        queue = queue_of(self.app, kw.get("routing_key"), kw.get("declare"))
        new = self._new_job(headers["id"], sender, headers, body, properties.get("priority"), queue)
        if self.batch_publish:
            publish_soon(self.runtime, new)
        else:
            write_published(self.runtime, [new])

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the record of every task published so far from this process is written
        (e.g. before handing its id to a client that reads it from another process); False if
        ``timeout`` seconds passed first."""
        return self.runtime.store.database.commits.flush(timeout)

    def _retry_sent(self, task_id: str) -> None:
        """The run of ``task_id`` in this process is publishing its retry."""
        tracked = self.task_of(task_id)
        if tracked is not None:
            tracked.retry_sent = True

    def on_worker_init(self, sender: Any = None, **kw: Any) -> None:
        """A worker of this app starts here (its prefork children inherit the mark)."""
        if getattr(sender, "app", None) is self.app:
            self._commits.in_worker = True

    def on_shutdown(self, **kw: Any) -> None:
        """A worker (process) stops: write what its tasks published and their outcomes."""
        self.flush()
        self._commits.stop()

    def _new_job(
        self,
        task_id: str,
        name: str,
        headers: dict[str, Any],
        body: Any,
        priority: Any,
        queue: str,
    ) -> NewJob:
        return NewJob(
            id=task_id,
            key=f"celery:{task_id}",
            kind=name,
            payload=payload_of(body),
            owner=headers.get(OWNER_HEADER),
            trigger=str(headers.get(TRIGGER_HEADER) or "api"),
            priority=priority_of(priority, serves_zero_first(self.app)),
            queue=queue,
            labels=ENGINE_LABEL,
            max_attempts=1 + int(getattr(self.app.tasks.get(name), "max_retries", 0) or 0),
        )

    # -- running ------------------------------------------------------------------------

    def on_prerun(self, task_id: str, task: Task[Any, Any], **kw: Any) -> None:
        """A worker starts the task: its job becomes ``running`` (created on first sight)."""
        if task.app is not self.app or not self.tracked(task):
            return  # another app's task (several apps can live in one process)
        runtime = self.runtime
        self._commits.use(runtime)
        self._after_retry(task_id)
        run = self._start(task_id, task, kw)
        if run is not None:
            interval = runtime.settings.heartbeat_interval
            runtime.heartbeat.hold(task_id, run.buffer.lease, run.buffer, interval)
            tracked = TaskRun(run)
        else:  # it ended already (e.g. cancelled while queued): never rerun
            tracked = TaskRun(None, ended=self._ended(task_id))
        with self._lock:
            self._tasks[task_id] = tracked

    def _ended(self, task_id: str) -> Status | None:
        """How the job of a task that will not run ended (None if unknown)."""
        try:
            return self.tracker.get(task_id).status
        except (JobNotFound, StoreError):
            return None

    def _after_retry(self, task_id: str) -> None:
        """A retry can start in another pool thread of this process as soon as it is sent,
        before the run that sent it has recorded the retry: wait for that run to end here,
        so the job is requeued (a ``retrying`` event) before it is taken again."""
        previous = self.task_of(task_id)
        if previous is not None and previous.retry_sent:
            previous.left.wait(RETRY_RECORD_TIMEOUT)

    def _start(self, task_id: str, task: Task[Any, Any], kw: dict[str, Any]) -> Run | None:
        """The run of a task starting now: its job adopted, or created on sight. Retried
        through a database outage (as outcomes are), so a task that starts while the store is
        down waits for it and runs tracked, instead of running untracked and failing."""
        return self.runtime.store.database.through_outage(
            lambda: self._adopt(task_id) or self._start_on_sight(task_id, task, kw)
        )

    def _adopt(self, task_id: str) -> Run | None:
        """The common case in one statement: the task's queued job starts here."""
        lease = uuid.uuid4().hex
        job = self.runtime.store.celery.adopt(task_id, lease, runner_identity())
        if job is None:
            return None
        run = self.runner.hold(job, lease)
        journal.held_changed("started", run.buffer, duration=None)
        return run

    def _start_on_sight(self, task_id: str, task: Task[Any, Any], kw: dict[str, Any]) -> Run | None:
        """Create the job of a task whose record is not written yet (its publisher's write is
        still on its way, or it was published where jobtrail is not installed) as ``running``
        here. A record that exists is taken over (a redelivery's job is rescued first); None
        if it has ended."""
        request = task.request
        headers = {name: getattr(request, name, None) for name in (OWNER_HEADER, TRIGGER_HEADER)}
        body = (kw.get("args") or (), kw.get("kwargs") or {})
        delivery: dict[str, Any] = getattr(request, "delivery_info", None) or {}
        queue = queue_of(self.app, delivery.get("routing_key"))
        new = self._new_job(task_id, task.name, headers, body, delivery.get("priority"), queue)
        new = self.runtime.submitter.prepared(replace(new, external=True))
        lease = uuid.uuid4().hex
        job = self.runtime.store.celery.start(new, lease, runner_identity())
        if job is None:  # a redelivery, or written meanwhile: take it over (unless it ended)
            return self.runner.take_over(task_id)
        run = self.runner.hold(job, lease)
        journal.held_changed("created", run.buffer, duration=None)
        journal.held_changed("started", run.buffer, duration=None)
        return run

    def on_failure(self, task_id: str, exception: BaseException, **kw: Any) -> None:
        """Remember the error; ``postrun`` records the outcome."""
        tracked = self.task_of(task_id)
        if tracked is not None:
            tracked.error = exception

    def on_retry(self, request: Any, reason: Any, **kw: Any) -> None:
        """The task asked to be retried: its job goes back to ``queued`` with a ``retrying``
        event (the attempt that failed is kept in the history) — unless what it retries is a
        cancel (``autoretry_for=(Exception,)`` catches ``Cancelled`` too): the job ends
        ``cancelled`` and the retry is discarded when it arrives."""
        tracked = self.task_of(request.id)
        if tracked is None or tracked.run is None:
            return
        tracked.error = None
        cause = getattr(reason, "exc", None)
        if isinstance(cause, Cancelled):
            self.runner.fail(tracked.run.buffer, cause)
        else:
            self.runner.requeue(tracked.run.buffer, EventType.RETRYING, str(reason))
        tracked.run = None  # recorded; postrun has nothing more to write

    def on_postrun(
        self, task_id: str, task: Task[Any, Any], retval: Any, state: str, **kw: Any
    ) -> None:
        """The task returned or raised: record how it ended, once."""
        with self._lock:
            tracked = self._tasks.pop(task_id, None)
        if tracked is None:
            return
        self.runtime.heartbeat.release(task_id)
        tracked.left.set()
        if tracked.run is None:
            return
        if tracked.error is not None:
            self.runner.fail(tracked.run.buffer, tracked.error)
        else:
            self.runner.succeed(tracked.run.buffer, json_safe(retval))

    def on_revoked(self, request: Any, **kw: Any) -> None:
        """Revoked before it ran (or terminated): the job ends ``cancelled``."""
        task_id = getattr(request, "id", None)
        if task_id is None:
            return
        tracked = self.task_of(task_id)
        if tracked is not None:
            tracked.error = Cancelled(task_id, "revoked")
            return
        with suppress(IllegalTransition, JobNotFound):  # it ended already, or was never tracked
            self.tracker.report(task_id, {"error_message": "revoked in Celery"}, Status.CANCELLED)

    def revoke(self, job: Job) -> None:
        """jobtrail cancelled a Celery job in this process: revoke the task too, so workers
        drop its message on receipt. Not needed for the cancel to work: a worker finds the
        job cancelled when the task arrives, and a running task stops at its next checkpoint,
        whichever process cancelled it."""
        if job.labels.get("engine") == ENGINE_LABEL["engine"]:
            self.app.control.revoke(job.id)

    def use(self, tracker: Tracker) -> None:
        """Mirror into ``tracker`` from now on (it revokes the tasks it cancels)."""
        self.tracker = tracker
        tracker.cancel_hooks.append(self.revoke)

    def connect(self) -> None:
        """Connect the handlers to Celery's signals (weakly: keep this object alive)."""
        signals.before_task_publish.connect(self.on_publish, weak=False)
        signals.task_prerun.connect(self.on_prerun, weak=False)
        signals.task_failure.connect(self.on_failure, weak=False)
        signals.task_retry.connect(self.on_retry, weak=False)
        signals.task_postrun.connect(self.on_postrun, weak=False)
        signals.task_revoked.connect(self.on_revoked, weak=False)
        signals.worker_init.connect(self.on_worker_init, weak=False)
        signals.worker_process_shutdown.connect(self.on_shutdown, weak=False)
        signals.worker_shutdown.connect(self.on_shutdown, weak=False)
        self.use(self.tracker)
        CeleryPresence(self.app, lambda: self.tracker, self.tracked).connect()


def install(
    app: Celery, tracker: Tracker, *, track_all: bool = False, batch_publish: bool = True
) -> CeleryTracking:
    """Mirror ``app``'s tracked tasks into ``tracker`` (``track_all``: every task).

    ``batch_publish=False`` writes each task's record before it is published, one
    transaction per task, for callers that hand a task id to another process at once and
    would rather not call ``tracking_of(app).flush()`` first.
    """
    tracking = CeleryTracking(app, tracker, track_all, batch_publish)
    tracking.connect()
    app.jobtrail = tracking  # type: ignore[attr-defined]
    return tracking


def tracking_of(app: Celery) -> CeleryTracking:
    """The tracking ``install`` attached to ``app``."""
    tracking: CeleryTracking | None = getattr(app, "jobtrail", None)
    if tracking is None:
        raise RuntimeError("jobtrail.integrations.celery.install() was not called for this app")
    return tracking
