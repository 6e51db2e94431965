"""FailedItems: the failed items of one run as the runner stores them, listed up to a bound and
only counted past it."""

from __future__ import annotations

from jobtrail.jobs import JSON, NewEvent, NewFailedItem, items_list_full
from jobtrail.redaction import MAX_ERROR, MAX_ITEM_ID, Redactor, clean_text, shown
from jobtrail.states import EventType

MAX_LISTED_ITEMS = 100
"""Failed ids a job's ``error_details`` name."""


class FailedItems:
    """A run's failed items not yet written, each with its ``item_failed`` event; past
    ``max_items`` listed by this run (one ``items_list_full`` event then) they are only counted.

    Not locked: the ``ProgressBuffer`` that holds it guards it with its own lock.
    """

    def __init__(self, redactor: Redactor, max_items: int) -> None:
        self._redactor = redactor
        self._max_items = max_items
        self._listed = 0
        self._pending: list[NewFailedItem] = []
        self._ids: list[str] = []
        """The first ``MAX_LISTED_ITEMS`` failed ids, for ``details``."""

    def item_id(self, item_id: str) -> str:
        """How a failed item's id is stored and shown: cleaned, redacted, at most 500
        characters."""
        return self._redactor.text(clean_text(item_id)[:MAX_ITEM_ID])[:MAX_ITEM_ID]

    def failed(self, item_id: str, error: BaseException) -> NewFailedItem:
        """The record of item ``item_id`` (as ``item_id()`` made it) failed with ``error``, its
        message redacted."""
        message = self._redactor.text(shown(error), MAX_ERROR)
        return NewFailedItem(item_id, type(error).__name__[:200], message)

    def add(self, item: NewFailedItem) -> list[NewEvent]:
        """List ``item`` while the run lists fewer than ``max_items``; the events to queue with
        it, in order (none once the list is full)."""
        if len(self._ids) < MAX_LISTED_ITEMS:
            self._ids.append(item.item_id)
        if self._listed >= self._max_items:
            return []
        self._listed += 1
        self._pending.append(item)
        data = {"item_id": item.item_id, "error_type": item.error_type}
        events = [NewEvent(EventType.ITEM_FAILED, item.message, data)]
        if self._listed == self._max_items:
            events.append(items_list_full(self._max_items))
        return events

    def take(self) -> list[NewFailedItem]:
        """The items not yet written, now counted as written."""
        items, self._pending = self._pending, []
        return items

    def restore(self, items: list[NewFailedItem]) -> None:
        """Put back ``items`` a failed write took, ahead of any listed since."""
        self._pending[:0] = items

    def details(self, failed: int) -> dict[str, JSON]:
        """The failed ids and how many failed (``failed``), for a job's ``error_details``."""
        if not self._ids:
            return {}
        return {"failed_items": list(self._ids), "failed_items_count": failed}
