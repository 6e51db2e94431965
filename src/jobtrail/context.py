"""Context: what a running handler sees — progress, items, logs and checks for a stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from jobtrail.exceptions import Cancelled, Interrupt, ShuttingDown, TimedOut
from jobtrail.jobs import JSON, Job, NewEvent
from jobtrail.redaction import clean_text, shown
from jobtrail.states import EventType

if TYPE_CHECKING:
    from jobtrail.progress import ProgressBuffer

T = TypeVar("T")

MAX_ITEM_ID = 500


def item_key(item_id: object) -> str:
    """How an item id is stored: text the database accepts, at most 500 characters."""
    return clean_text(shown(item_id))[:MAX_ITEM_ID]


class Context:
    """The handle a job's code uses to report progress, record items and check for stops.

    Every reporting call is cheap: it updates counters in memory, and the runner writes them
    at most every ``flush_interval`` seconds (at once on a status change, and at the end).
    Thread-safe: several threads of one job may report through one context.
    """

    def __init__(
        self,
        job: Job,
        buffer: ProgressBuffer,
        *,
        stopping: threading.Event | None = None,
        only_items: Collection[str] | None = None,
    ) -> None:
        self.job_id = job.id
        self.kind = job.kind
        self.owner = job.owner
        self.attempt = job.attempt
        self.payload: JSON = job.payload
        self.started_at = job.started_at
        self._buffer = buffer
        self._stopping = stopping
        self._only_items = None if only_items is None else frozenset(only_items)
        self._timeout = job.timeout
        self._deadline = None if job.timeout is None else time.monotonic() + job.timeout

    def progress(
        self, percent: float | None = None, message: str | None = None, **data: JSON
    ) -> None:
        """Set the percentage (of the current stage's band, inside a ``stage``) and/or status
        message, and merge ``data`` into ``progress_data``.

        Raises ``Cancelled`` (or ``TimedOut``/``ShuttingDown``) if the job should stop.
        """
        self._buffer.set_progress(percent, message, data)
        self.check()

    def stage(
        self,
        name: str,
        *,
        start: float | None = None,
        end: float | None = None,
        message: str | None = None,
    ) -> None:
        """Enter the named stage, which owns the band ``start``–``end`` of the percentage.

        ``start`` defaults to the current percentage and ``end`` to 100; the percentage is
        ``start`` at once. Inside the stage, item counts (``set_total``, ``advance``, ``item``,
        ``items``) move the percentage from ``start`` to ``end`` — counting the items left when
        the stage began, so ``set_total`` is always the job's total — and ``progress(percent)``
        is a percentage *of the stage* (``progress(50)`` in a 20–90 stage is 55 %). Each stage
        change is a ``stage`` event in the history, never coalesced away; the job's ``stage``
        field names the current one. Raises ``ValueError`` unless 0 ≤ start ≤ end ≤ 100, and
        ``Cancelled`` (or ``TimedOut``/``ShuttingDown``) if the job should stop.
        """
        self._buffer.enter_stage(name, start, end, message)
        self.check()

    def set_total(self, total: int) -> None:
        """Declare how many items the job will process; progress is then derived from counts."""
        self._buffer.set_total(total)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items as processed successfully."""
        self._buffer.advance(n)

    def log(self, message: str, **data: JSON) -> None:
        """Append a ``log`` event to the job's history (written with the next flush)."""
        redactor = self._buffer.redactor
        shown: dict[str, JSON] = redactor.json(data)
        text = redactor.text(message, 4096)
        self._buffer.add_event(NewEvent(EventType.LOG, text, shown))
        self._buffer.log.info(text, **shown)

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
        if self._buffer.total is None and isinstance(iterable, Collection):
            self.set_total(len(iterable))
        only, stored_id = self._only_items, self._buffer.item_id
        for element in iterable:
            # Failed items are stored by their redacted id: compare like with like.
            if only is not None and stored_id(item_key(key(element))) not in only:
                self.advance()
                continue
            yield element

    @property
    def cancelled(self) -> bool:
        """Whether a cancel has been requested (as of the last write or check)."""
        return self._buffer.cancel_requested or self._buffer.lost

    def check(self) -> None:
        """Raise ``ShuttingDown``, ``TimedOut`` or ``Cancelled`` if the job should stop now."""
        if self._stopping is not None and self._stopping.is_set():
            raise ShuttingDown(self.job_id)
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise TimedOut(self.job_id, self._timeout or 0.0)
        self._buffer.tick(poll=True)
        if self._buffer.lost:
            raise Cancelled(self.job_id, "the job is no longer held by this runner")
        if self._buffer.cancel_requested:
            raise Cancelled(self.job_id)

    def flush(self) -> None:
        """Write pending progress, events and failed items now (normally done automatically)."""
        self._buffer.flush()

    def wait(self, reason: str) -> None:
        """Show the job ``waiting`` with ``reason`` (e.g. "handed to the remote OCR worker")
        while this handler keeps it: heartbeats go on, a cancel still reaches ``check()``.

        The next report (``progress``, ``set_total``, ``advance``, ``item``, ``log``,
        ``stage``) or the job's end makes it ``running`` again; ``check()`` alone does not.
        """
        self._buffer.wait(reason)


class ItemScope:
    """The ``with`` block returned by ``Context.item``."""

    __slots__ = ("_buffer", "_ctx", "item_id")

    def __init__(self, ctx: Context, item_id: str) -> None:
        self._ctx = ctx
        self._buffer = ctx._buffer
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
        if exc is not None and (isinstance(exc, Interrupt) or not isinstance(exc, Exception)):
            return False
        self._buffer.record_item(self.item_id, exc)
        self._buffer.tick()
        return exc is not None
