"""jobtrail: durable records and a reliable runner for every background job in your service."""

from typing import TYPE_CHECKING

from jobtrail.alerts import Alert, AlertPage, AlertRule, AlertRuleInfo
from jobtrail.context import Context
from jobtrail.exceptions import (
    AlertRuleRefused,
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
    UnknownAlertRule,
    UnknownKind,
    UnknownSchedule,
    WebhookNotFound,
    WebhookRefused,
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
from jobtrail.webhooks import Attempt, Delivery, DeliveryStatus, Subscription

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
    "Alert",
    "AlertPage",
    "AlertRule",
    "AlertRuleInfo",
    "AlertRuleRefused",
    "Attempt",
    "BulkAction",
    "BulkOutcome",
    "Cancelled",
    "Context",
    "Delivery",
    "DeliveryStatus",
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
    "Subscription",
    "TimedOut",
    "Tracker",
    "UnknownAlertRule",
    "UnknownKind",
    "UnknownSchedule",
    "WebhookNotFound",
    "WebhookRefused",
    "WorkerInfo",
    "configure_logging",
]
