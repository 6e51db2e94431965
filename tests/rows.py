"""Rows rewritten behind the store's back: the states a lost worker or a dead process leaves."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from jobtrail import Tracker
from jobtrail.store import Store
from jobtrail.store.tables import jobs


def force(
    store: Store | Tracker, row_id: str | None = None, /, *, table: sa.Table = jobs, **values: Any
) -> None:
    """Set ``values`` with a plain UPDATE, bypassing the state machine: on the row ``row_id`` of
    ``table`` (a job, by default), or with no ``row_id`` on every row of ``table``."""
    if isinstance(store, Tracker):
        store = store.store
    update = table.update().values(**values)
    if row_id is not None:
        update = update.where(table.c.id == row_id)
    with store.database.engine.begin() as conn:
        conn.execute(update)
