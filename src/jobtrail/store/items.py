"""ItemStore: a job's failed items, listed up to a bound per job and read a page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobtrail.jobs import FailedItem, ItemPage, NewEvent, NewFailedItem, items_list_full
from jobtrail.states import EventType
from jobtrail.store.database import Database
from jobtrail.store.rows import failed_item_from_row, item_row
from jobtrail.store.tables import job_items

c = job_items.c


class ItemStore:
    """Reads of failed items, in the order they failed (``id``), by keyset: a page is the
    items after an id, so pages stay stable while items are added."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def failed(self, job_id: str, after: int = 0, limit: int | None = None) -> list[FailedItem]:
        """The items a job failed to process, in the order they failed: those listed after
        item id ``after``, at most ``limit`` (None: all of them)."""
        with self._db.read() as conn:
            return _after(conn, job_id, after, limit)

    def page(
        self, job_id: str, after: int = 0, limit: int = 100, max_items: int | None = None
    ) -> ItemPage:
        """At most ``limit`` of a job's failed items after item id ``after``, with the count
        of all it lists; ``full`` once that count reached ``max_items``."""
        with self._db.read() as conn:
            total = _count(conn, job_id)
            found = _after(conn, job_id, after, limit + 1)
        more = len(found) > limit
        found = found[:limit]
        return ItemPage(
            items=found,
            total=total,
            limit=limit,
            next_after=found[-1].id if more else None,
            full=max_items is not None and total >= max_items,
        )


def list_items(
    conn: Connection,
    job_id: str,
    at: datetime,
    items: Sequence[NewFailedItem],
    max_items: int | None,
    actor: str | None,
) -> list[NewEvent]:
    """Insert the reported failed items that fit under ``max_items`` (None: all); their
    ``item_failed`` events, and the one ``items_list_full`` event of the report that fills the
    list. Items past the bound are left out here: the caller still counts them."""
    listed, full = items, False
    if max_items is not None:
        stored = _count(conn, job_id)
        listed = items[: max(max_items - stored, 0)]
        full = stored < max_items <= stored + len(items)
    if listed:
        conn.execute(job_items.insert(), [item_row(job_id, at, i) for i in listed])
    events = [_item_event(i, actor) for i in listed]
    if full and max_items is not None:
        events.append(replace(items_list_full(max_items), actor=actor))
    return events


def _count(conn: Connection, job_id: str) -> int:
    count: int = conn.execute(sa.select(sa.func.count()).where(c.job_id == job_id)).scalar_one()
    return count


def _after(conn: Connection, job_id: str, after: int, limit: int | None) -> list[FailedItem]:
    stmt = sa.select(job_items).where(c.job_id == job_id, c.id > after).order_by(c.id)
    return [failed_item_from_row(r._mapping) for r in conn.execute(stmt.limit(limit))]


def _item_event(item: NewFailedItem, actor: str | None) -> NewEvent:
    """The history entry of a failed item reported from elsewhere (as the runner writes it)."""
    data = {"item_id": item.item_id, "error_type": item.error_type}
    return NewEvent(EventType.ITEM_FAILED, item.message, data, actor=actor)
