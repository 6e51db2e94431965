"""jobtrail: durable records and a reliable runner for every background job in your service."""

from typing import TYPE_CHECKING

from jobtrail.context import Context
from jobtrail.exceptions import (
    Cancelled,
    DuplicateKey,
    IllegalTransition,
    Interrupt,
    ItemsNotListed,
    JobNotFound,
    JobTimeout,
    JobtrailError,
    NotAllowed,
    PayloadError,
    SchemaError,
    ShuttingDown,
    StoreError,
    StoreUnavailable,
    TimedOut,
    UnknownKind,
    UnknownSchedule,
)
from jobtrail.filters import Filters
from jobtrail.jobs import (
    JSON,
    BulkAction,
    BulkOutcome,
    Event,
    FailedItem,
    ItemPage,
    Job,
    NewFailedItem,
    NewJob,
    Page,
    QueueInfo,
    ScheduleInfo,
    ScheduleRun,
    Stats,
    WorkerInfo,
)
from jobtrail.kinds import JobHandle, KindOptions, SubmitOptions
from jobtrail.logs import configure_logging
from jobtrail.states import EventType, Priority, Status
from jobtrail.tracker import Tracker

if TYPE_CHECKING:
    from jobtrail.scheduler import Schedule
    from jobtrail.settings import Settings


def __getattr__(name: str) -> object:
    # Settings pulls in pydantic-settings and Schedule croniter: loaded when asked for.
    if name == "Settings":
        from jobtrail.settings import Settings

        return Settings
    if name == "Schedule":
        from jobtrail.scheduler import Schedule

        return Schedule
    raise AttributeError(f"module 'jobtrail' has no attribute {name!r}")


__all__ = [
    "JSON",
    "BulkAction",
    "BulkOutcome",
    "Cancelled",
    "Context",
    "DuplicateKey",
    "Event",
    "EventType",
    "FailedItem",
    "Filters",
    "IllegalTransition",
    "Interrupt",
    "ItemPage",
    "ItemsNotListed",
    "Job",
    "JobHandle",
    "JobNotFound",
    "JobTimeout",
    "JobtrailError",
    "KindOptions",
    "NewFailedItem",
    "NewJob",
    "NotAllowed",
    "Page",
    "PayloadError",
    "Priority",
    "QueueInfo",
    "Schedule",
    "ScheduleInfo",
    "ScheduleRun",
    "SchemaError",
    "Settings",
    "ShuttingDown",
    "Stats",
    "Status",
    "StoreError",
    "StoreUnavailable",
    "SubmitOptions",
    "TimedOut",
    "Tracker",
    "UnknownKind",
    "UnknownSchedule",
    "WorkerInfo",
    "configure_logging",
]
