"""The job vocabulary's records: what people read (``Job``, ``Event``, ``Page``, …) and what
the store takes in (``NewJob``, ``Progress``, …); the states they are in live in ``states``."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from jobtrail.states import EventType, Priority, Status

JSON: TypeAlias = Any
"""A value that survives a JSON round trip (dict, list, str, int, float, bool, None)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One job's durable record, as read from the store. A value: the store changes jobs."""

    id: str
    kind: str
    status: Status
    priority: Priority
    trigger: str
    queue: str
    created_at: datetime
    updated_at: datetime
    run_after: datetime
    key: str | None = None
    owner: str | None = None
    progress: float = 0.0
    message: str | None = None
    items_total: int | None = None
    items_done: int | None = None
    items_succeeded: int | None = None
    items_failed: int | None = None
    progress_data: JSON = None
    payload: JSON = None
    result: JSON = None
    error_message: str | None = None
    error_details: JSON = None
    labels: dict[str, JSON] = field(default_factory=dict)
    attempt: int = 0
    max_attempts: int = 1
    timeout: float | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    heartbeat_at: datetime | None = None
    duration_seconds: float | None = None
    eta_seconds: float | None = None
    cancel_requested: bool = False
    stalled: bool = False
    worker: str | None = None
    schedule: str | None = None
    retry_of: str | None = None
    external: bool = False
    """Whether the job runs elsewhere and reports its progress (``Tracker.add``, Celery)."""
    stage: str | None = None
    """The named stage the job is in (``ctx.stage``), if it uses stages."""
    wait_reason: str | None = None
    """Why a ``waiting`` job waits (e.g. no live worker consumes its queue)."""
    expires_at: datetime | None = None
    """A queued job not started by then ends ``cancelled`` ("expired")."""
    report_timeout: float | None = None
    """An external job with no report for this many seconds ends ``failed``."""

    @property
    def terminal(self) -> bool:
        """True once the job has reached a state it never leaves."""
        return self.status.terminal


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a job's append-only history."""

    id: int
    job_id: str
    at: datetime
    type: str
    message: str | None = None
    data: JSON = None
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class FailedItem:
    """An item a job could not process, with the error it raised; ``id`` orders a job's
    failed items (pass the last one's as ``after`` for the next page)."""

    id: int
    job_id: str
    item_id: str
    error_type: str
    message: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ItemPage:
    """One page of a job's failed items in the order they failed.

    ``total`` counts the items listed for the job; ``next_after`` is the ``after`` of the next
    page (None: this page reached the last item listed so far). ``full``: the job listed as
    many as ``max_failed_items`` — failed items past them were counted in ``items_failed``
    but not listed.
    """

    items: Sequence[FailedItem]
    total: int
    limit: int
    next_after: int | None
    full: bool


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a job listing, newest first, with the exact count of all matches."""

    jobs: Sequence[Job]
    total_count: int
    limit: int
    offset: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Aggregates over the jobs created in a window, computed by the store in SQL."""

    days: int
    total_jobs: int
    jobs_by_status: dict[str, int]
    jobs_by_kind: dict[str, int]
    success_rate: float | None
    average_duration_seconds: float | None
    p50_duration_seconds: float | None
    p95_duration_seconds: float | None
    total_processing_seconds: float
    active_jobs: int
    groups: dict[str, Stats] = field(default_factory=dict)
    """With ``group_by``: the same figures per kind, owner ("" for unowned jobs) or label
    value — the 50 largest groups; empty otherwise."""

    @classmethod
    def empty(cls, days: int) -> Stats:
        """Statistics of no jobs at all."""
        return cls(days, 0, {}, {}, None, None, None, None, 0.0, 0)


DURATION_BUCKETS: tuple[float, ...] = (
    0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600,
)  # fmt: skip
"""Upper bounds (seconds) of the duration histogram kept in rollups and reported as metrics;
one more bucket holds the rest."""


@dataclass(frozen=True, slots=True)
class ScheduleRun:
    """The audit record of one slot: fired, deduplicated (another process fired it) or missed."""

    schedule: str
    slot_at: datetime
    outcome: str
    job_id: str | None
    worker: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as stored: its rule, last handled slot, next run and recent audited slots."""

    name: str
    kind: str
    cron: str | None
    every_seconds: float | None
    owner: str | None
    last_slot_at: datetime | None
    next_run_at: datetime | None
    recent_runs: Sequence[ScheduleRun] = ()


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker process as its heartbeats register it (``Tracker.workers``).

    A worker is live while ``last_seen_at`` is within ``heartbeat_timeout``; the queues of the
    live jobtrail workers decide which queued jobs wait ("no worker consumes queue 'gpu'").
    """

    id: str
    engine: str
    """``jobtrail`` (a ``tracker.worker``) or ``celery`` (a worker of an installed app)."""
    host: str
    pid: int
    queues: Sequence[str] | None
    """The queues it consumes; None: every queue."""
    kinds: Sequence[str]
    concurrency: int
    running: int
    """Jobs it held at its last heartbeat."""
    started_at: datetime
    last_seen_at: datetime

    def consumes(self, queue: str) -> bool:
        """Whether this worker takes jobs from ``queue``."""
        return self.queues is None or queue in self.queues


class BulkAction(enum.StrEnum):
    """What ``tracker.bulk`` does to each job it is given."""

    CANCEL = "cancel"
    RETRY = "retry"
    RETRY_FAILED_ITEMS = "retry_failed_items"


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """What one bulk action did: every matched job is either done or skipped with a reason."""

    action: BulkAction
    matched: int
    done: Sequence[str]
    """The jobs acted on (for retries: the jobs retried)."""
    retries: Mapping[str, str]
    """For retries: each retried job's id → its new job's id."""
    skipped: Mapping[str, str]
    """Jobs left alone → why ("not found", "already ended", "no failed items", …)."""


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue at a glance (``tracker.queues()``): its backlog, its last hour, its consumers."""

    name: str
    queued: int
    waiting: int
    running: int
    oldest_queued_seconds: float | None
    """Age of the oldest job due to run and still queued; None when none is."""
    finished_last_hour: int
    failed_last_hour: int
    """Of those finished, how many ``failed`` or ended ``partial``."""
    workers: int = 0
    """Live workers consuming it (jobtrail's and Celery's)."""

    @property
    def unattended(self) -> bool:
        """Work is queued or waiting and no live worker consumes the queue."""
        return self.workers == 0 and self.queued + self.waiting > 0


# -- what the store takes in ----------------------------------------------------------------


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
    external: bool = False
    """A job that runs elsewhere and reports (``Tracker.add`` sets it)."""
    expires_at: datetime | None = None
    report_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append to a job's history."""

    type: str
    message: str | None = None
    data: JSON = None
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class NewFailedItem:
    """A failed item to record."""

    item_id: str
    error_type: str
    message: str


def items_list_full(bound: int) -> NewEvent:
    """The one event of a job whose list of failed items reached ``bound``
    (``max_failed_items``): items failing after it are counted, not listed."""
    message = f"{bound} failed items listed, the most a job keeps: later ones are only counted"
    return NewEvent(EventType.LOG, message, {"max_failed_items": bound})


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
    stage: str | None = None
    """The named stage the job is in (``ctx.stage``)."""

    @property
    def items_done(self) -> int | None:
        """Items finished either way, or None when the job does not count items."""
        if self.items_succeeded is None and self.items_failed is None:
            return None
        return (self.items_succeeded or 0) + (self.items_failed or 0)
