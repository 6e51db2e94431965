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
from jobtrail.jobs import (
    Event,
    EventType,
    FailedItem,
    ItemPage,
    Job,
    Page,
    Priority,
    Stats,
    Status,
)
from jobtrail.kinds import JobHandle
from jobtrail.tracker import Tracker

if TYPE_CHECKING:
    from jobtrail.settings import Settings


def __getattr__(name: str) -> object:
    # Settings pulls in pydantic-settings; load it only when someone asks for it.
    if name == "Settings":
        from jobtrail.settings import Settings

        return Settings
    raise AttributeError(f"module 'jobtrail' has no attribute {name!r}")


__all__ = [
    "Cancelled",
    "Context",
    "DuplicateKey",
    "Event",
    "EventType",
    "FailedItem",
    "IllegalTransition",
    "Interrupt",
    "ItemPage",
    "ItemsNotListed",
    "Job",
    "JobHandle",
    "JobNotFound",
    "JobTimeout",
    "JobtrailError",
    "NotAllowed",
    "Page",
    "PayloadError",
    "Priority",
    "SchemaError",
    "Settings",
    "ShuttingDown",
    "Stats",
    "Status",
    "StoreError",
    "StoreUnavailable",
    "TimedOut",
    "Tracker",
    "UnknownKind",
    "UnknownSchedule",
]
