"""Rows: the public records of ``jobtrail.jobs`` as table rows, and back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from jobtrail.jobs import Event, FailedItem, Job, NewEvent, NewFailedItem, NewJob, Progress
from jobtrail.states import ACTIVE, Priority, Status
from jobtrail.store.tables import job_events, job_labels, jobs


def event_row(job_id: str, at: datetime, event: NewEvent) -> dict[str, Any]:
    """The ``job_events`` row of ``event``."""
    return {
        "job_id": job_id,
        "at": at,
        "type": str(event.type),
        "message": event.message,
        "data": event.data,
        "actor": event.actor,
    }


def item_row(job_id: str, at: datetime, item: NewFailedItem) -> dict[str, Any]:
    """The ``job_items`` row of a failed item."""
    return {
        "job_id": job_id,
        "item_id": item.item_id,
        "error_type": item.error_type,
        "message": item.message,
        "at": at,
    }


def progress_columns(progress: Progress) -> dict[str, Any]:
    """The job columns a progress snapshot sets (a snapshot that moved clears ``stalled``)."""
    return {
        "progress": progress.progress,
        "message": progress.message,
        "items_total": progress.items_total,
        "items_done": progress.items_done,
        "items_succeeded": progress.items_succeeded,
        "items_failed": progress.items_failed,
        "progress_data": progress.progress_data,
        "stage": progress.stage,
    } | ({"stalled": False} if progress.moved else {})


def new_row(new: NewJob, now: datetime) -> dict[str, Any]:
    """The ``jobs`` row of a new job."""
    running = new.status is Status.RUNNING
    return {
        "id": new.id,
        "key": new.key,
        "key_scope": key_scope(new.owner),
        "kind": new.kind,
        "owner": new.owner,
        "trigger": new.trigger,
        "queue": new.queue,
        "priority": new.priority.rank,
        "status": new.status.value,
        "progress": 0.0,
        "message": new.message,
        "items_total": new.items_total,
        "items_done": None,
        "items_succeeded": None,
        "items_failed": None,
        "progress_data": None,
        "payload": new.payload,
        "result": None,
        "error_message": None,
        "error_details": None,
        "labels": dict(new.labels),
        "attempt": 1 if running else 0,
        "max_attempts": new.max_attempts,
        "timeout": new.timeout,
        "created_at": now,
        "updated_at": now,
        "started_at": now if running else None,
        "completed_at": None,
        "run_after": new.run_after or now,
        "heartbeat_at": now if running else None,
        "duration_seconds": None,
        "cancel_requested": False,
        "stalled": False,
        "worker": None,
        "lease": None,
        "schedule": new.schedule,
        "retry_of": new.retry_of,
        "only_items": list(new.only_items) if new.only_items is not None else None,
        "external": new.external,
        "stage": None,
        "wait_reason": None,
        "expires_at": new.expires_at,
        "report_timeout": new.report_timeout,
    }


def running_row(new: NewJob, now: datetime, worker: str, lease: str) -> dict[str, Any]:
    """The ``jobs`` row of a new job inserted already running under ``lease`` (attempt 1)."""
    return new_row(new, now) | {
        "status": Status.RUNNING.value,
        "attempt": 1,
        "started_at": now,
        "heartbeat_at": now,
        "worker": worker,
        "lease": lease,
    }


LABEL_KEY_CHARS = 100
LABEL_VALUE_CHARS = 200


def label_text(value: Any) -> str | None:
    """How a label value is indexed in ``job_labels`` (as migration 0005 copied them): text as
    it is, numbers and booleans as JSON; None for values that are not scalars (they stay in
    the job's labels, unindexed). Label filters compare these texts."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value[:LABEL_VALUE_CHARS]
    if isinstance(value, int | float):
        return repr(value)
    return None


def label_rows(job_id: str, labels: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``job_labels`` rows of a job's scalar labels (keys longer than 100 are not indexed)."""
    rows = []
    for key, value in labels.items():
        text = label_text(value)
        if text is not None and len(key) <= LABEL_KEY_CHARS:
            rows.append({"job_id": job_id, "key": key, "value": text})
    return rows


def append_labels(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Index the labels of new job rows (``new_row``'s) in one statement."""
    found = [label for row in rows for label in label_rows(row["id"], row["labels"] or {})]
    if found:
        conn.execute(job_labels.insert(), found)


def key_scope(owner: str | None) -> str:
    """The scope a job's idempotency key is unique in: its owner's, or '' without one."""
    return owner or ""


def append_events(conn: Connection, at: datetime, events: Iterable[tuple[str, NewEvent]]) -> None:
    """Append events of any jobs (``(job_id, event)`` pairs) in one statement."""
    rows = [event_row(job_id, at, event) for job_id, event in events]
    if rows:
        conn.execute(job_events.insert(), rows)


JOB_COLUMNS = tuple(c for c in jobs.c if c.name not in ("lease", "key_scope"))
"""Every column of a job but its lease, which never leaves the store, and its key scope
(its owner's)."""


def _or(value: int | None, default: int | None) -> int | None:
    return default if value is None else value


def job_from_row(row: Mapping[Any, Any], now: datetime) -> Job:
    """The ``Job`` for a ``jobs`` row, with its derived fields computed at ``now``."""
    status = Status(row["status"])
    # Counts are null while a job counts nothing; once it has a total, an uncounted one is 0.
    counted = 0 if row["items_total"] is not None else None
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
        items_done=_or(row["items_done"], counted),
        items_succeeded=_or(row["items_succeeded"], counted),
        items_failed=_or(row["items_failed"], counted),
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
        external=bool(row["external"]),
        stage=row["stage"],
        wait_reason=row["wait_reason"],
        expires_at=row["expires_at"],
        report_timeout=row["report_timeout"],
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
        id=row["id"],
        job_id=row["job_id"],
        item_id=row["item_id"],
        error_type=row["error_type"],
        message=row["message"],
        at=row["at"],
    )
