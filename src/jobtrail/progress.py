"""ProgressBuffer: a running job's progress coalesced in memory and written in batches."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from jobtrail import journal
from jobtrail.exceptions import InvalidData, StoreError
from jobtrail.failed_items import FailedItems
from jobtrail.jobs import JSON, Job, NewEvent, NewFailedItem, Progress
from jobtrail.logs import logger
from jobtrail.redaction import (
    MAX_ERROR,
    MAX_MESSAGE,
    MAX_VALUE_CHARS,
    Redactor,
    check_storable,
    clean_text,
    traceback_text,
)
from jobtrail.states import EventType, Status, outcome

if TYPE_CHECKING:
    from jobtrail.store.runs import RunStore

MAX_STAGE = 100
Pending = tuple[Progress, list[NewEvent], list[NewFailedItem]]


class ProgressBuffer:
    """The runner's side of one job: counters updated under a lock by the handler's calls,
    written to the store at most every ``flush_interval`` (at once on a status change), and
    the job's terminal write. Thread-safe: several threads of one job may report through it.
    """

    def __init__(
        self,
        job: Job,
        runs: RunStore,
        lease: str,
        *,
        redactor: Redactor,
        flush_interval: float = 0.25,
        max_items: int = 10_000,
    ) -> None:
        self.job_id = job.id
        self.kind = job.kind
        self.owner = job.owner
        self.attempt = job.attempt
        self.lease = lease
        self.began = time.monotonic()
        """``time.monotonic()`` when this runner took the job (durations in the journal)."""
        self.started_at = job.started_at
        self.redactor = redactor
        self._runs = runs
        self._interval = flush_interval
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._percent = job.progress
        self._derive = False
        self._message = job.message
        self.total = job.items_total
        self._stage = job.stage
        # The current stage's band: an absolute percentage is ``_low + _span * percent``.
        self._low, self._span, self._base = 0.0, 1.0, 0
        self._succeeded: int | None = None
        self._failed: int | None = None
        self._data: dict[str, JSON] = {}
        self._data_changed = False
        self._stored_data: JSON = None
        self._events: list[NewEvent] = []
        self._items = FailedItems(redactor, max_items)
        self._dirty = False
        self._flushed_message = job.message
        self._stored_message = job.message
        self._next_flush = time.monotonic() + flush_interval
        self.cancel_requested = job.cancel_requested
        self.lost = False
        self.waiting = False
        """Whether the handler waits (``ctx.wait``) until its next report."""
        self.last_moved = time.monotonic()
        """``time.monotonic()`` of the last change of percentage or item counts."""
        self._last_counts: tuple[float, int | None, int | None] = (job.progress, None, None)
        self.log = logger("jobtrail").bind(job_id=job.id, kind=job.kind, owner=job.owner)

    # -- what the handler reports -----------------------------------------------------------

    def set_progress(
        self, percent: float | None, message: str | None, data: dict[str, JSON]
    ) -> None:
        """Set the percentage and/or message, and merge ``data`` into ``progress_data``.

        Raises ``InvalidData`` for data no database stores as given (e.g. NaN); its text is
        cleaned, and it and the message are redacted, once per write, not per call.
        """
        if data:
            try:
                check_storable(data, text=False)
            except ValueError as exc:
                raise InvalidData(f"progress data: {exc}") from None
        with self._lock:
            if percent is not None:
                self._percent = self._low + self._span * min(max(float(percent), 0.0), 100.0)
                self._derive = False
            if message is not None:
                self._message = message if type(message) is str else str(message)
            if data:
                self._data.update(data)
                self._data_changed = True
            self._dirty = True

    def set_total(self, total: int) -> None:
        """Declare the number of items; the percentage then follows the counts."""
        with self._lock:
            self.total = total
            self._derive = True
            self._dirty = True
        self.tick()

    def advance(self, n: int) -> None:
        """Count ``n`` more items as succeeded."""
        with self._lock:
            self._succeeded = (self._succeeded or 0) + n
            self._failed = self._failed or 0
            self._derive = True
            self._dirty = True
        if time.monotonic() >= self._next_flush:
            self.flush()

    def add_event(self, event: NewEvent) -> None:
        """Queue an event for the next write."""
        with self._lock:
            self._events.append(event)
            self._dirty = True
        self.tick()

    def enter_stage(
        self, name: str, start: float | None, end: float | None, message: str | None
    ) -> None:
        """Begin stage ``name``, owning the band ``start``–``end`` of the percentage (``start``
        defaults to the current percentage, ``end`` to 100), with a ``stage`` event queued in
        order with the job's other events. The message pending before it is kept as a
        ``progress`` event first, so a stage change never coalesces a message away."""
        stage = self.redactor.text(clean_text(str(name)), MAX_STAGE)[:MAX_STAGE]
        message = None if message is None else str(message)
        shown_message = None if message is None else self.redactor.text(message, MAX_MESSAGE)
        with self._lock:
            if self._derive and self.total:
                self._percent = self._derived()
            low = self._percent if start is None else float(start)
            high = 100.0 if end is None else float(end)
            if not 0.0 <= low <= high <= 100.0:
                raise ValueError(
                    f"a stage's band must be 0 <= start <= end <= 100, not {low}–{high}"
                )
            self._queue_pending_message()
            if message is not None:
                self._message = self._flushed_message = message
                self._stored_message = shown_message
            text = stage if shown_message is None else f"{stage}: {shown_message}"
            data = {"stage": stage, "start": low, "end": high}
            self._events.append(NewEvent(EventType.STAGE, text, data))
            self._stage, self._low, self._span = stage, low, (high - low) / 100.0
            self._base = (self._succeeded or 0) + (self._failed or 0)
            self._percent, self._derive, self._dirty = low, False, True
        self.tick()

    def _queue_pending_message(self) -> None:
        """Queue the message not yet written as a ``progress`` event (caller holds ``_lock``)."""
        if self._message is None or self._message == self._flushed_message:
            return
        self._stored_message = self.redactor.text(self._message, MAX_MESSAGE)
        data = {"progress": self._percent}
        self._events.append(NewEvent(EventType.PROGRESS, self._stored_message, data))
        self._flushed_message = self._message

    def item_id(self, item_id: str) -> str:
        """How a failed item's id is stored and shown: cleaned, redacted, at most 500
        characters."""
        return self._items.item_id(item_id)

    def record_item(self, item_id: str, error: BaseException | None) -> None:
        """Count one item as succeeded, or as failed with ``error`` (recorded and logged, its
        id and message redacted)."""
        item = None if error is None else self._items.failed(self.item_id(item_id), error)
        with self._lock:
            self._derive = True
            self._dirty = True
            self._failed = self._failed or 0
            if item is None:
                self._succeeded = (self._succeeded or 0) + 1
                return
            self._failed = (self._failed or 0) + 1
            self._succeeded = self._succeeded or 0
            self._events += self._items.add(item)
        self.log.warning(
            "item failed", item_id=item.item_id, error_type=item.error_type, error=item.message
        )

    def wait(self, reason: str) -> None:
        """Write what is pending, then show the job ``waiting`` with ``reason`` (still held
        here); the next report ends the wait, written at once."""
        self.flush()
        text = self.redactor.text(clean_text(str(reason)), MAX_MESSAGE)
        self.lost = self.lost or not self._runs.waits.wait(self.job_id, self.lease, text)
        self.waiting, self._next_flush = True, 0.0
        if not self.lost:
            journal.held_changed("waiting", self, reason=text, duration=None)

    def observe(self, *, cancel_requested: bool, held: bool) -> None:
        """Take in what a heartbeat learned about this job."""
        self.cancel_requested = self.cancel_requested or cancel_requested
        self.lost = self.lost or not held

    # -- writing ----------------------------------------------------------------------------

    def tick(self, poll: bool = False) -> None:
        """Write what is pending if the flush interval passed; with ``poll``, ask the store
        about a pending cancel even when nothing is pending."""
        if time.monotonic() < self._next_flush:
            return
        if self._dirty:
            self.flush()
        elif poll:
            self._poll_cancel()

    def _poll_cancel(self) -> None:
        self._next_flush = time.monotonic() + self._interval
        try:
            held = self._runs.cancel_requested(self.job_id, self.lease)
        except StoreError as exc:
            self.log.warning("cancel check failed", error=str(exc))
            return
        if held is None:
            self.lost = True
        else:
            self.cancel_requested = self.cancel_requested or held

    def flush(self) -> None:
        """Write pending progress, events and failed items now."""
        if not self._flush_lock.acquire(blocking=False):
            return  # another thread of this job is writing; its snapshot includes our counts
        try:
            with self._lock:
                self._next_flush = time.monotonic() + self._interval
                progress, events, items = self._snapshot()
            try:
                if self.waiting:  # any report ends the handler's wait
                    if self._runs.waits.resume(self.job_id, self.lease):
                        journal.held_changed("resumed", self, duration=None)
                    self.waiting = False
                result = self._runs.flush(self.job_id, self.lease, progress, events, items)
            except StoreError as exc:
                self._restore(events, items)
                self.log.warning("progress write failed; will retry", error=str(exc))
                return
            self.cancel_requested = self.cancel_requested or result.cancel_requested
            self.lost = self.lost or not result.applied
            if result.applied and (progress.moved or events):
                journal.progressed(self.job_id, self.kind, self.owner, progress)
        finally:
            self._flush_lock.release()

    def _snapshot(self) -> Pending:
        """Take what is pending (caller holds ``_lock``)."""
        if self._derive and self.total:
            self._percent = self._derived()
        counts = (self._percent, self._succeeded, self._failed)
        moved = counts != self._last_counts
        if moved:
            self._last_counts = counts
            self.last_moved = time.monotonic()
        events, self._events = self._events, []
        items = self._items.take()
        if self._message != self._flushed_message and self._message is not None:
            # Redacted once per write of a new message, never per ``ctx.progress`` call.
            self._stored_message = self.redactor.text(self._message, MAX_MESSAGE)
            data = {"progress": self._percent}
            # The current message was set after the last stage began: it follows that stage.
            stages = [i for i, e in enumerate(events) if e.type == EventType.STAGE]
            at = stages[-1] + 1 if stages else 0
            events.insert(at, NewEvent(EventType.PROGRESS, self._stored_message, data))
            self._flushed_message = self._message
        if self._data_changed:
            self._stored_data = self.redactor.json(self._data, max_chars=MAX_VALUE_CHARS)
            self._data_changed = False
        progress = Progress(
            moved=moved,
            progress=self._percent,
            message=self._stored_message,
            items_total=self.total,
            items_succeeded=self._succeeded,
            items_failed=self._failed,
            progress_data=self._stored_data,
            stage=self._stage,
        )
        self._dirty = False
        return progress, events, items

    def _derived(self) -> float:
        """The percentage the item counts give: the share of the items left when the stage
        began that are done now, placed in the stage's band (caller holds ``_lock``)."""
        total = self.total or 0
        done = (self._succeeded or 0) + (self._failed or 0)
        left = total - self._base
        share = min(max(done - self._base, 0) * 100.0 / left, 100.0) if left > 0 else 100.0
        return self._low + self._span * share

    def take(self) -> Pending:
        """Everything not yet written, for a runner that ends the job another way."""
        with self._lock:
            return self._snapshot()

    def _restore(self, events: list[NewEvent], items: list[NewFailedItem]) -> None:
        with self._lock:
            self._events[:0] = events  # in order; a message already taken is not taken again
            self._items.restore(items)
            self._dirty = True

    # -- ending -----------------------------------------------------------------------------

    def outcome(self) -> Status:
        """The terminal status earned so far if the handler returned now."""
        with self._lock:
            return outcome(self._succeeded or 0, self._failed or 0)

    def failure_summary(self) -> str:
        """E.g. "3 of 20 items failed"."""
        with self._lock:
            failed, total = self._failed or 0, self.total
        counted = f"{failed} of {total}" if total else str(failed)
        return f"{counted} item{'' if failed == 1 and not total else 's'} failed"

    def error_details(self, error: BaseException | None) -> dict[str, JSON] | None:
        """Redacted details of ``error`` and of the failed items, for the job record."""
        details: dict[str, JSON] = {}
        if error is not None:
            details["type"] = type(error).__name__
            details["traceback"] = self.redactor.text(traceback_text(error))
        details.update(self._items.details(self._failed or 0))
        return details or None

    def finish(
        self,
        status: Status,
        *,
        result: JSON = None,
        error_message: str | None = None,
        error_details: JSON = None,
        wait: bool = True,
    ) -> bool:
        """Write the terminal state with the last progress; False if someone else decided first.

        ``wait=False`` queues the write for the worker's next group commit."""
        with self._flush_lock, self._lock:
            done = (self._succeeded or 0) + (self._failed or 0)
            if status is Status.SUCCEEDED and (not self.total or done >= self.total):
                self._percent, self._derive = 100.0, False  # whatever band it ended in
            progress, events, items = self._snapshot()
        if error_message is not None:
            error_message = self.redactor.text(error_message, MAX_ERROR)
        try:
            if self.waiting:  # it ends from running, like any report
                self._runs.waits.resume(self.job_id, self.lease)
            finished = self._runs.finish(
                self.job_id,
                self.lease,
                status,
                progress,
                started_at=self.started_at,
                result=result,
                error_message=error_message,
                error_details=self.redactor.json(error_details),
                events=[*events, NewEvent(EventType(status.value), error_message)],
                items=items,
                wait=wait,
            )
        except StoreError:
            self._restore(events, items)  # a retried finish writes them all again
            raise
        if finished:
            journal.held_changed(status.value, self, error=error_message)
        return finished
