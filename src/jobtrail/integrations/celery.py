"""Celery integration: every tracked task becomes a jobtrail job whose id is the task id.

``install(app, tracker)`` connects Celery's signals; tasks built on ``TrackedTask`` (or every
task with ``track_all=True``) are created ``queued`` when published, ``running`` when a
worker starts them, and end ``succeeded``/``partial``/``failed``/``cancelled`` — the same
records, events and transitions as jobs run by jobtrail's own worker. Celery's states are
mapped here, at the edge, onto jobtrail's vocabulary.

Publishing does not wait for the database: the ``queued`` records of published tasks are
written by a background thread, many per transaction, within milliseconds (``flush()``
waits for them; they are flushed at exit too). A worker that takes a task before its
record is written creates the record itself, ``running``; the publisher's write then finds
it and adds nothing, so each task has exactly one record and one history.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any, TypeGuard

from jobtrail import journal
from jobtrail.context import Context, ItemScope
from jobtrail.exceptions import (
    Cancelled,
    IllegalTransition,
    JobNotFound,
    MissingExtra,
)
from jobtrail.jobs import JSON, EventType, Job, NewJob, Priority, Status
from jobtrail.runner import Run, Runner, runner_identity
from jobtrail.store.celery_rows import celery_rows
from jobtrail.tracker import Tracker

try:
    from celery import Celery, Task, signals
    from celery.backends.base import DisabledBackend
except ImportError as exc:
    raise MissingExtra("celery", "jobtrail.integrations.celery", ["celery"]) from exc

# Loaded once celery is known to be installed.
from jobtrail.integrations.celery_background import (
    HeldBeat,
    PublishWriter,
    SharedCommits,
    write_published,
)
from jobtrail.integrations.celery_presence import CeleryPresence

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


REVERSED_PRIORITY_SCHEMES = ("redis", "rediss", "sentinel")
"""Brokers on which Celery serves priority 0 first (its Redis transport); on the others
(RabbitMQ) 9 is served first."""


def priority_of(value: Any, zero_first: bool = False) -> Priority:
    """jobtrail's priority for a Celery message priority (0–9); ``zero_first``: the broker
    serves 0 first (Redis), so 0 is urgent and 9 low."""
    if not isinstance(value, int):
        return Priority.NORMAL
    if zero_first:
        value = 9 - value
    return max((p for p, n in CELERY_PRIORITY.items() if value >= n), key=lambda p: p.rank)


def serves_zero_first(app: Celery) -> bool:
    """Whether ``app``'s broker serves priority 0 first (Redis) rather than 9 (RabbitMQ)."""
    url = str(app.conf.broker_url or "")
    return url.partition("://")[0].split("+")[0] in REVERSED_PRIORITY_SCHEMES


@dataclass
class _Task:
    """A tracked task running in this worker process (``run`` None: its job already ended)."""

    run: Run | None
    error: BaseException | None = None
    current: int = 0
    """The last ``meta["current"]`` given to ``update_state`` (``advance`` takes differences)."""

    @property
    def skipped(self) -> bool:
        """Whether there is nothing (more) to record for this run."""
        return self.run is None


@dataclass
class CeleryTracking:
    """The signal handlers that mirror one Celery app's tasks into one tracker."""

    app: Celery
    tracker: Tracker
    track_all: bool = False
    batch_publish: bool = True
    """Write published tasks' records from a background thread (False: before publishing)."""
    _tasks: dict[str, _Task] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _writer: PublishWriter = field(default_factory=PublishWriter)
    _beat: HeldBeat = field(init=False)
    _commits: SharedCommits = field(default_factory=SharedCommits)

    def __post_init__(self) -> None:
        self._beat = HeldBeat(lambda: self.tracker.settings.heartbeat_interval)

    @property
    def runner(self) -> Runner:
        """Inside a worker the outcome of a task is queued for a commit shared with this
        process's other writes, so the next task starts at once (written before exit)."""
        return Runner(self.tracker, wait_for_outcomes=not self._commits.shared)

    def tracked(self, task: Any) -> bool:
        """Whether ``task`` (a task or a task name) is mirrored into jobtrail."""
        if isinstance(task, str):
            task = self.app.tasks.get(task)
        return self.track_all or isinstance(task, TrackedTask)

    def task_of(self, task_id: str) -> _Task | None:
        """The tracked run of ``task_id`` in this process, if any."""
        with self._lock:
            return self._tasks.get(task_id)

    # -- publishing ---------------------------------------------------------------------

    def on_publish(self, sender: str, headers: dict[str, Any], body: Any, **kw: Any) -> None:
        """A task is being sent: its job is created ``queued`` (retries reuse the job), by the
        background writer unless ``batch_publish`` is off."""
        if not self.tracked(sender) or headers.get("retries", 0):
            return
        properties: dict[str, Any] = kw.get("properties") or {}
        new = self._new_job(headers["id"], sender, headers, body, properties.get("priority"))
        if self.batch_publish:
            self._writer.put(self.tracker, new)
        else:
            write_published(self.tracker, [new])

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the record of every task published so far from this process is written
        (e.g. before handing its id to a client that reads it from another process); False if
        ``timeout`` seconds passed first."""
        return self._writer.flush(timeout)

    def on_worker_init(self, sender: Any = None, **kw: Any) -> None:
        """A worker of this app starts here (its prefork children inherit the mark)."""
        if getattr(sender, "app", None) is self.app:
            self._commits.in_worker = True

    def on_shutdown(self, **kw: Any) -> None:
        """A worker (process) stops: write what its tasks published and their outcomes."""
        self.flush()
        self._commits.stop()

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
            priority=priority_of(priority, serves_zero_first(self.app)),
            labels=ENGINE_LABEL,
            max_attempts=1 + int(getattr(self.app.tasks.get(name), "max_retries", 0) or 0),
        )

    # -- running ------------------------------------------------------------------------

    def on_prerun(self, task_id: str, task: Task[Any, Any], **kw: Any) -> None:
        """A worker starts the task: its job becomes ``running`` (created on first sight)."""
        if task.app is not self.app or not self.tracked(task):
            return  # another app's task (several apps can live in one process)
        self._commits.use(self.tracker.store.database)
        run = self._adopt(task_id) or self._start_on_sight(task_id, task, kw)
        if run is not None:  # else it ended already (e.g. cancelled while queued): never rerun
            self._beat.hold(self.tracker, run.buffer)
        with self._lock:
            self._tasks[task_id] = _Task(run)

    def _adopt(self, task_id: str) -> Run | None:
        """The common case in one statement: the task's queued job starts here."""
        lease = uuid.uuid4().hex
        job = celery_rows(self.tracker.store.database).adopt(task_id, lease, runner_identity())
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
        priority = (getattr(request, "delivery_info", None) or {}).get("priority")
        new = self._new_job(task_id, task.name, headers, body, priority)
        new = replace(self.tracker.redactor.new_job(new), external=True)
        lease = uuid.uuid4().hex
        job = celery_rows(self.tracker.store.database).start(new, lease, runner_identity())
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
        event (the attempt that failed is kept in the history)."""
        tracked = self.task_of(request.id)
        if tracked is None or tracked.run is None:
            return
        tracked.error = None
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
        self._beat.release(task_id)
        if tracked.run is None:
            return
        if tracked.error is not None:
            self.runner.fail(tracked.run.buffer, tracked.error)
        else:
            self.runner.succeed(tracked.run.buffer, _json(retval))

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
        """jobtrail cancelled a Celery job: revoke the task too (a running task also stops at
        its next checkpoint)."""
        if job.labels.get("engine") == ENGINE_LABEL["engine"]:
            self.app.control.revoke(job.id)

    def use(self, tracker: Tracker) -> None:
        """Mirror into ``tracker`` from now on: it revokes the tasks it cancels, and reads the
        records this process published as soon as it asks for them."""
        self.tracker = tracker
        tracker.cancel_hooks.append(self.revoke)
        tracker.settle_hooks.append(self._writer.settle)

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


class TrackedTask(Task):  # type: ignore[type-arg]
    """A Celery task base whose runs are jobtrail jobs, with ``Context``-like reporting.

    ``@app.task(base=TrackedTask, bind=True)`` then ``self.stage(…)``, ``self.progress(…)``,
    ``self.set_total(n)``, ``with self.item(id): …``, ``self.check()`` inside the task.
    """

    def _tracked(self) -> _Task | None:
        tracking: CeleryTracking | None = getattr(self.app, "jobtrail", None)
        task_id = self.request.id
        return None if tracking is None or task_id is None else tracking.task_of(task_id)

    @property
    def ctx(self) -> Context:
        """The job's context for the current run."""
        tracked = self._tracked()
        if tracked is None or tracked.run is None:
            raise RuntimeError("this task is not tracked: was install() called for its app?")
        return tracked.run.ctx

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tracked = self._tracked()
        if tracked is not None and tracked.skipped:
            return None  # the job already ended (cancelled, or finished by an earlier delivery)
        return super().__call__(*args, **kwargs)

    def progress(
        self, percent: float | None = None, message: str | None = None, **data: JSON
    ) -> None:
        """Like ``Context.progress``."""
        self.ctx.progress(percent, message, **data)

    def stage(
        self,
        name: str,
        *,
        start: float | None = None,
        end: float | None = None,
        message: str | None = None,
    ) -> None:
        """Like ``Context.stage``: enter a named stage owning the band ``start``–``end``."""
        self.ctx.stage(name, start=start, end=end, message=message)

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

    def wait(self, reason: str) -> None:
        """Like ``Context.wait``: the job shows ``waiting`` with ``reason`` until the task
        reports again (e.g. while a remote worker has the document)."""
        self.ctx.wait(reason)

    def update_state(
        self,
        task_id: str | None = None,
        state: str | None = None,
        meta: Any = None,
        **kwargs: Any,
    ) -> None:
        """Celery's ``update_state``, read by jobtrail too, so existing code reports progress
        unchanged: ``meta``'s ``current``/``total``, ``percent``/``progress`` and
        ``message``/``status`` become the job's counts, percentage and message (see
        ``META_KEYS``). Celery's own then runs, unless the app has no result backend (where
        it could only raise)."""
        tracked = self._tracked()
        own = task_id is None or task_id == self.request.id
        if own and tracked is not None and tracked.run is not None and isinstance(meta, Mapping):
            report_meta(tracked.run.ctx, tracked, meta)
        if not isinstance(self.backend, DisabledBackend):
            super().update_state(task_id, state, meta, **kwargs)


META_KEYS = {
    "total": ("total",),
    "current": ("current", "done"),
    "percent": ("percent", "progress"),
    "message": ("message", "status"),
}
"""The ``update_state`` meta keys jobtrail reads (the first present of each), for Celery's
custom-state progress recipes."""


def report_meta(ctx: Context, tracked: _Task, meta: Mapping[str, Any]) -> None:
    """Map ``update_state`` meta onto ``ctx``: a total, a current count (as an advance past
    the last one), a percentage (clamped to 0–100) and a message; other keys are ignored."""
    total, current, percent, message = (
        next((meta[k] for k in keys if meta.get(k) is not None), None)
        for keys in META_KEYS.values()
    )
    if _whole(total):
        ctx.set_total(total)
    if _whole(current) and current > tracked.current:
        ctx.advance(current - tracked.current)
        tracked.current = current
    share = float(percent) if isinstance(percent, int | float) else None
    if isinstance(percent, bool) or (share is not None and not math.isfinite(share)):
        share = None
    text = message if isinstance(message, str) else None
    if share is not None or text is not None:
        ctx.progress(None if share is None else min(max(share, 0.0), 100.0), text)


def _whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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
