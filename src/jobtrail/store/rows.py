"""Conversion of database rows into the public records of ``jobtrail.jobs``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jobtrail.jobs import ACTIVE, Event, FailedItem, Job, Priority, Status
from jobtrail.store.tables import job_events, job_items, jobs


def job_from_row(row: Mapping[Any, Any], now: datetime) -> Job:
    """The ``Job`` for a ``jobs`` row, with its derived fields computed at ``now``."""
    status = Status(row["status"])
    return Job(
        id=row["id"],
        key=row["key"],
        kind=row["kind"],
        owner=row["owner"],
        trigger=row["trigger"],
        queue=row["queue"],
        priority=Priority.from_rank(row["priority"]),
        status=status,
        progress=row["progress"],
        message=row["message"],
        items_total=row["items_total"],
        items_done=row["items_done"],
        items_succeeded=row["items_succeeded"],
        items_failed=row["items_failed"],
        progress_data=row["progress_data"],
        payload=row["payload"],
        result=row["result"],
        error_message=row["error_message"],
        error_details=row["error_details"],
        labels=row["labels"] or {},
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        timeout=row["timeout"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        run_after=row["run_after"],
        heartbeat_at=row["heartbeat_at"],
        duration_seconds=row["duration_seconds"],
        eta_seconds=_eta(status, row["started_at"], row["progress"], now),
        cancel_requested=row["cancel_requested"],
        stalled=row["stalled"],
        worker=row["worker"],
        schedule=row["schedule"],
        retry_of=row["retry_of"],
    )


def _eta(
    status: Status, started_at: datetime | None, progress: float, now: datetime
) -> float | None:
    """Seconds left at the rate observed so far, while a running job has made some progress."""
    if status not in ACTIVE or started_at is None or not 0 < progress < 100:
        return None
    elapsed = max((now - started_at).total_seconds(), 0.0)
    return round(elapsed * (100 - progress) / progress, 3)


def event_from_row(row: Mapping[Any, Any]) -> Event:
    """The ``Event`` for a ``job_events`` row."""
    return Event(
        id=row["id"],
        job_id=row["job_id"],
        at=row["at"],
        type=row["type"],
        message=row["message"],
        data=row["data"],
        actor=row["actor"],
    )


def failed_item_from_row(row: Mapping[Any, Any]) -> FailedItem:
    """The ``FailedItem`` for a ``job_items`` row."""
    return FailedItem(
        job_id=row["job_id"],
        item_id=row["item_id"],
        error_type=row["error_type"],
        message=row["message"],
        at=row["at"],
    )


JOB_COLUMNS = tuple(c for c in jobs.c if c.name != "lease")
EVENT_COLUMNS = tuple(job_events.c)
ITEM_COLUMNS = tuple(job_items.c)
