"""What the store takes in: new jobs, events, failed items, progress snapshots and filters."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobtrail.jobs import JSON, Priority, Status


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to insert: everything the submitter decides."""

    kind: str
    payload: JSON = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    key: str | None = None
    owner: str | None = None
    trigger: str = "manual"
    queue: str = "default"
    priority: Priority = Priority.NORMAL
    labels: Mapping[str, JSON] = field(default_factory=dict)
    max_attempts: int = 1
    timeout: float | None = None
    run_after: datetime | None = None
    schedule: str | None = None
    retry_of: str | None = None
    only_items: Sequence[str] | None = None
    status: Status = Status.QUEUED
    items_total: int | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append to a job's history."""

    type: str
    message: str | None = None
    data: JSON = None
    actor: str | None = None

    def row(self, job_id: str, at: datetime) -> dict[str, Any]:
        """The ``job_events`` row of this event."""
        return {
            "job_id": job_id,
            "at": at,
            "type": str(self.type),
            "message": self.message,
            "data": self.data,
            "actor": self.actor,
        }


@dataclass(frozen=True, slots=True)
class NewFailedItem:
    """A failed item to record."""

    item_id: str
    error_type: str
    message: str

    def row(self, job_id: str, at: datetime) -> dict[str, Any]:
        """The ``job_items`` row of this failed item."""
        return {
            "job_id": job_id,
            "item_id": self.item_id,
            "error_type": self.error_type,
            "message": self.message,
            "at": at,
        }


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of a running job's progress, written as a whole by one flush."""

    progress: float
    message: str | None
    items_total: int | None
    items_succeeded: int | None
    items_failed: int | None
    progress_data: JSON = None
    moved: bool = True
    """Whether percentage or counts changed since the last write (a stalled flag then clears)."""

    @property
    def items_done(self) -> int | None:
        """Items finished either way, or None when the job does not count items."""
        if self.items_succeeded is None and self.items_failed is None:
            return None
        return (self.items_succeeded or 0) + (self.items_failed or 0)

    def columns(self) -> dict[str, Any]:
        """The job columns this snapshot sets."""
        return {
            "progress": self.progress,
            "message": self.message,
            "items_total": self.items_total,
            "items_done": self.items_done,
            "items_succeeded": self.items_succeeded,
            "items_failed": self.items_failed,
            "progress_data": self.progress_data,
        } | ({"stalled": False} if self.moved else {})
