"""Context: what a running handler sees; progress is coalesced in memory and flushed in batches."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Collection, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from jobtrail.exceptions import Cancelled, Interrupt, ShuttingDown, StoreError, TimedOut
from jobtrail.jobs import JSON, EventType, Job, Status, outcome
from jobtrail.redaction import Redactor, clean_text
from jobtrail.store.records import NewEvent, NewFailedItem, Progress

if TYPE_CHECKING:
    from jobtrail.store.sql import Store

T = TypeVar("T")

_MAX_LISTED_ITEMS = 100
MAX_MESSAGE = 4000
MAX_ITEM_ID = 500


def item_key(item_id: object) -> str:
    """How an item id is stored: text the database accepts, at most 500 characters."""
    return clean_text(str(item_id))[:MAX_ITEM_ID]


class Context:
    """The handle a job's code uses to report progress, record items and check for stops.

    Every reporting call is cheap: it updates counters under a lock and writes to the store
    at most every ``flush_interval`` seconds (at once on a status change, and at the end).
    Thread-safe: several threads of one job may report through one context.
    """

    def __init__(
        self,
        job: Job,
        store: Store,
        lease: str,
        *,
        redactor: Redactor,
        flush_interval: float = 0.25,
        stopping: threading.Event | None = None,
        only_items: Collection[str] | None = None,
    ) -> None:
        self.job_id = job.id
        self.kind = job.kind
        self.owner = job.owner
        self.attempt = job.attempt
        self.payload: JSON = job.payload
        self.started_at = job.started_at
        self._store = store
        self._lease = lease
        self._redactor = redactor
        self._interval = flush_interval
        self._stopping = stopping
        self._only_items = None if only_items is None else frozenset(only_items)
        self._deadline = None if job.timeout is None else time.monotonic() + job.timeout
        self._timeout = job.timeout
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._percent = job.progress
        self._derive = False
        self._message = job.message
        self._total = job.items_total
        self._succeeded: int | None = None
        self._failed: int | None = None
        self._data: dict[str, JSON] = {}
        self._events: list[NewEvent] = []
        self._items: list[NewFailedItem] = []
        self._failed_ids: list[str] = []
        self._dirty = False
        self._flushed_message = job.message
        self._next_flush = time.monotonic() + flush_interval
        self._cancel = job.cancel_requested
        self._lost = False
        self._moved_at = time.monotonic()
        self._last_counts: tuple[float, int | None, int | None] = (job.progress, None, None)
        import structlog  # loaded on first use, to keep ``import jobtrail`` light

        self._log = structlog.get_logger("jobtrail").bind(
            job_id=job.id, kind=job.kind, owner=job.owner
        )

    # -- reporting ----------------------------------------------------------------------

    def progress(
        self, percent: float | None = None, message: str | None = None, **data: JSON
    ) -> None:
        """Set the percentage and/or status message, and merge ``data`` into ``progress_data``.

        Raises ``Cancelled`` (or ``TimedOut``/``ShuttingDown``) if the job should stop.
        """
        with self._lock:
            if percent is not None:
                self._percent = min(max(float(percent), 0.0), 100.0)
                self._derive = False
            if message is not None:
                self._message = clean_text(message)[:MAX_MESSAGE]
            if data:
                self._data.update(data)
            self._dirty = True
        self.check()

    def set_total(self, total: int) -> None:
        """Declare how many items the job will process; progress is then derived from counts."""
        with self._lock:
            self._total = total
            self._derive = True
            self._dirty = True
        self._tick()

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items as processed successfully."""
        with self._lock:
            self._succeeded = (self._succeeded or 0) + n
            self._failed = self._failed or 0
            self._derive = True
            self._dirty = True
        if time.monotonic() >= self._next_flush:
            self.flush()

    def log(self, message: str, **data: JSON) -> None:
        """Append a ``log`` event to the job's history (written with the next flush)."""
        event = NewEvent(
            EventType.LOG, self._redactor.text(message, 4096), self._redactor.json(data)
        )
        with self._lock:
            self._events.append(event)
            self._dirty = True
        self._log.info(message, **data)
        self._tick()

    def item(self, item_id: object) -> ItemScope:
        """A ``with`` block for one item: a failure is recorded and swallowed, the loop goes on.

        Stop requests are checked on entry. ``Interrupt`` exceptions (cancel, timeout,
        shutdown) and non-``Exception`` errors pass through unrecorded.
        """
        return ItemScope(self, item_key(item_id))

    def items(self, iterable: Iterable[T], key: Callable[[T], object] = str) -> Iterator[T]:
        """Yield the items this job should process, counting ``total`` if it is not set yet.

        On a retry of only the failed items, items that succeeded before are skipped here and
        counted as succeeded, so the new job's counts describe the whole set.
        """
        if self._total is None and isinstance(iterable, Collection):
            self.set_total(len(iterable))
        for element in iterable:
            if self._only_items is not None and item_key(key(element)) not in self._only_items:
                self.advance()
                continue
            yield element

    def observe(self, *, cancel_requested: bool, held: bool) -> None:
        """Take in what a heartbeat learned about this job (used by the worker)."""
        self._cancel = self._cancel or cancel_requested
        self._lost = self._lost or not held

    @property
    def last_moved(self) -> float:
        """``time.monotonic()`` of the last change of percentage or item counts."""
        return self._moved_at

    @property
    def cancelled(self) -> bool:
        """Whether a cancel has been requested (as of the last write or check)."""
        return self._cancel or self._lost

    def check(self) -> None:
        """Raise ``ShuttingDown``, ``TimedOut`` or ``Cancelled`` if the job should stop now."""
        if self._stopping is not None and self._stopping.is_set():
            raise ShuttingDown(self.job_id)
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise TimedOut(self.job_id, self._timeout or 0.0)
        self._tick(poll=True)
        if self._lost:
            raise Cancelled(self.job_id, "the job is no longer held by this runner")
        if self._cancel:
            raise Cancelled(self.job_id)

    # -- writing ------------------------------------------------------------------------

    def _tick(self, poll: bool = False) -> None:
        if time.monotonic() < self._next_flush:
            return
        if self._dirty:
            self.flush()
        elif poll:
            self._poll_cancel()

    def _poll_cancel(self) -> None:
        self._next_flush = time.monotonic() + self._interval
        try:
            held = self._store.cancel_requested(self.job_id, self._lease)
        except StoreError as exc:
            self._log.warning("cancel check failed", error=str(exc))
            return
        if held is None:
            self._lost = True
        else:
            self._cancel = self._cancel or held

    def _snapshot(self) -> tuple[Progress, list[NewEvent], list[NewFailedItem]]:
        """Take what is pending (caller holds ``_lock``)."""
        done = (self._succeeded or 0) + (self._failed or 0)
        percent = self._percent
        if self._derive and self._total:
            percent = min(done * 100.0 / self._total, 100.0)
            self._percent = percent
        counts = (percent, self._succeeded, self._failed)
        moved = counts != self._last_counts
        if moved:
            self._last_counts = counts
            self._moved_at = time.monotonic()
        progress = Progress(
            moved=moved,
            progress=percent,
            message=self._message,
            items_total=self._total,
            items_succeeded=self._succeeded,
            items_failed=self._failed,
            progress_data=dict(self._data) if self._data else None,
        )
        events, self._events = self._events, []
        items, self._items = self._items, []
        if self._message != self._flushed_message and self._message is not None:
            events.insert(0, NewEvent(EventType.PROGRESS, self._message, {"progress": percent}))
            self._flushed_message = self._message
        self._dirty = False
        return progress, events, items

    def take(self) -> tuple[Progress, list[NewEvent], list[NewFailedItem]]:
        """Everything not yet written, for a runner that ends the job another way."""
        with self._lock:
            return self._snapshot()

    def _restore(self, events: list[NewEvent], items: list[NewFailedItem]) -> None:
        with self._lock:
            self._events[:0] = [e for e in events if e.type != EventType.PROGRESS]
            self._items[:0] = items
            self._dirty = True

    def flush(self) -> None:
        """Write pending progress, events and failed items now (normally done automatically)."""
        if not self._flush_lock.acquire(blocking=False):
            return  # another thread of this job is writing; its snapshot includes our counts
        try:
            with self._lock:
                self._next_flush = time.monotonic() + self._interval
                progress, events, items = self._snapshot()
            try:
                result = self._store.flush(self.job_id, self._lease, progress, events, items)
            except StoreError as exc:
                self._restore(events, items)
                self._log.warning("progress write failed; will retry", error=str(exc))
                return
            self._cancel = self._cancel or result.cancel_requested
            self._lost = self._lost or not result.applied
        finally:
            self._flush_lock.release()

    # -- ending -------------------------------------------------------------------------

    def _record_item(self, item_id: str, error: BaseException | None) -> None:
        with self._lock:
            self._derive = True
            self._dirty = True
            self._failed = self._failed or 0
            if error is None:
                self._succeeded = (self._succeeded or 0) + 1
                return
            self._failed = (self._failed or 0) + 1
            self._succeeded = self._succeeded or 0
            message = self._redactor.text(str(error), 4096)
            error_type = type(error).__name__[:200]
            self._items.append(NewFailedItem(item_id, error_type, message))
            self._failed_ids.append(item_id)
            self._events.append(
                NewEvent(
                    EventType.ITEM_FAILED, message, {"item_id": item_id, "error_type": error_type}
                )
            )
        self._log.warning("item failed", item_id=item_id, error_type=error_type, error=message)

    def outcome(self) -> Status:
        """The terminal status earned so far if the handler returned now."""
        with self._lock:
            return outcome(self._succeeded or 0, self._failed or 0)

    def failure_summary(self) -> str:
        """E.g. "3 of 20 items failed"."""
        with self._lock:
            failed, total = self._failed or 0, self._total
        counted = f"{failed} of {total}" if total else str(failed)
        return f"{counted} item{'' if failed == 1 and not total else 's'} failed"

    def error_details(self, error: BaseException | None) -> dict[str, JSON] | None:
        """Redacted details of ``error`` and of the failed items, for the job record."""
        details: dict[str, JSON] = {}
        if error is not None:
            lines = traceback.format_exception(error)
            details["type"] = type(error).__name__
            details["traceback"] = self._redactor.text("".join(lines))
        if self._failed_ids:
            details["failed_items"] = self._failed_ids[:_MAX_LISTED_ITEMS]
            details["failed_items_count"] = len(self._failed_ids)
        return details or None

    def finish(
        self,
        status: Status,
        *,
        result: JSON = None,
        error_message: str | None = None,
        error_details: JSON = None,
        message: str | None = None,
        wait: bool = True,
    ) -> bool:
        """Write the terminal state with the last progress; False if someone else decided first.

        ``wait=False`` queues the write for the worker's next group commit."""
        with self._flush_lock, self._lock:
            if message is not None:
                self._message = clean_text(message)[:MAX_MESSAGE]
            if status is Status.SUCCEEDED and not self._total:
                self._percent, self._derive = 100.0, False
            progress, events, items = self._snapshot()
        if error_message is not None:
            error_message = self._redactor.text(error_message, 4096)
        try:
            return self._store.finish(
                self.job_id,
                self._lease,
                status,
                progress,
                started_at=self.started_at,
                result=result,
                error_message=error_message,
                error_details=self._redactor.json(error_details),
                events=[*events, NewEvent(EventType(status.value), error_message)],
                items=items,
                wait=wait,
            )
        except StoreError:
            self._restore(events, items)  # a retried finish writes them all again
            raise


class ItemScope:
    """The ``with`` block returned by ``Context.item``."""

    __slots__ = ("_ctx", "item_id")

    def __init__(self, ctx: Context, item_id: str) -> None:
        self._ctx = ctx
        self.item_id = item_id

    def __enter__(self) -> ItemScope:
        self._ctx.check()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None:
            self._ctx._record_item(self.item_id, None)
            self._ctx._tick()
            return False
        if isinstance(exc, Interrupt) or not isinstance(exc, Exception):
            return False
        self._ctx._record_item(self.item_id, exc)
        self._ctx._tick()
        return True
