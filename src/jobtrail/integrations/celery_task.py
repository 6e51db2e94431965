"""A tracked Celery task's side: ``TrackedTask``, the task base whose runs report like a
``Context`` (and read ``update_state``), and ``TaskRun``, one run in this worker process."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeGuard

from celery import Task
from celery.backends.base import DisabledBackend
from celery.exceptions import Ignore

from jobtrail.context import Context, ItemScope
from jobtrail.exceptions import Cancelled
from jobtrail.jobs import JSON
from jobtrail.logs import logger
from jobtrail.runner import Run
from jobtrail.states import Status

if TYPE_CHECKING:
    from jobtrail.integrations.celery import CeleryTracking

log = logger("jobtrail.celery")


@dataclass
class TaskRun:
    """A tracked task running in this worker process (``run`` None: its job already ended)."""

    run: Run | None
    error: BaseException | None = None
    ended: Status | None = None
    """How its job had ended when this run was skipped (None: unknown, or not skipped)."""
    retry_sent: bool = False
    """This run published its retry (which may start before the retry is recorded)."""
    left: threading.Event = field(default_factory=threading.Event)
    """Set once ``postrun`` took this run out of the process's table."""
    current: int = 0
    """The last ``meta["current"]`` given to ``update_state`` (``advance`` takes differences)."""

    @property
    def skipped(self) -> bool:
        """Whether there is nothing (more) to record for this run."""
        return self.run is None


class TrackedTask(Task):  # type: ignore[type-arg]
    """A Celery task base whose runs are jobtrail jobs, with ``Context``-like reporting.

    ``@app.task(base=TrackedTask, bind=True)`` then ``self.stage(…)``, ``self.progress(…)``,
    ``self.set_total(n)``, ``with self.item(id): …``, ``self.check()`` inside the task.
    """

    def _tracked(self) -> TaskRun | None:
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
            self._skip(tracked.ended)
        try:
            return super().__call__(*args, **kwargs)
        except Cancelled as exc:
            if tracked is None or exc.job_id != self.request.id:
                raise
            tracked.error = exc  # postrun records the job cancelled
            self._revoked(exc.reason)
            raise Ignore from exc

    def _skip(self, ended: Status | None) -> NoReturn:
        """Do not run a task whose job already ended: Celery records it ``REVOKED`` if the
        job was cancelled, and logs it ``ignored`` — never ``succeeded``. A job finished by an
        earlier delivery keeps the result that delivery stored."""
        log.info("task not run: its job already ended", job_id=self.request.id, status=ended)
        if ended is Status.CANCELLED:
            self._revoked("cancelled in jobtrail")
        raise Ignore

    def _revoked(self, reason: str) -> None:
        """Record this run ``REVOKED`` in the result backend, as a revoke would."""
        task_id = self.request.id
        if task_id is None or isinstance(self.backend, DisabledBackend):
            return
        store = _keeps_errors(self)
        self.backend.mark_as_revoked(task_id, reason, self.request, store_result=store)

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
        and stops on a cancel unchanged: ``meta``'s ``current``/``total``, ``percent``/
        ``progress`` and ``message``/``status`` become the job's counts, percentage and
        message (see ``META_KEYS``). Celery's own then runs, unless the app has no result
        backend (where it could only raise). A checkpoint, like ``check()``: raises
        ``Cancelled`` once jobtrail cancelled the job."""
        tracked = self._tracked() if task_id in (None, self.request.id) else None
        if tracked is not None and tracked.run is not None and isinstance(meta, Mapping):
            report_meta(tracked.run.ctx, tracked, meta)
        if not isinstance(self.backend, DisabledBackend):
            super().update_state(task_id, state, meta, **kwargs)
        if tracked is not None and tracked.run is not None:
            tracked.run.ctx.check()


META_KEYS = {
    "total": ("total",),
    "current": ("current", "done"),
    "percent": ("percent", "progress"),
    "message": ("message", "status"),
}
"""The ``update_state`` meta keys jobtrail reads (the first present of each), for Celery's
custom-state progress recipes."""


def report_meta(ctx: Context, tracked: TaskRun, meta: Mapping[str, Any]) -> None:
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


def _keeps_errors(task: Task[Any, Any]) -> bool:
    """Whether Celery stores ``task``'s errors and revocations for this run (as its worker
    decides: the request's ``ignore_result``, else the task's)."""
    ignored = vars(task.request).get("ignore_result")
    if ignored is None:
        ignored = task.ignore_result
    return not ignored or bool(task.store_errors_even_if_ignored)


def _whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
