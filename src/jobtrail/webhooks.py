"""The webhook vocabulary: the event types announced to programs, subscriptions, deliveries
and their attempts (values and the matching rule, no I/O)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobtrail.jobs import JSON
from jobtrail.states import EventType

EXPIRED_REASON = "expired"
"""The ``data.reason`` of the ``cancelled`` event an expiry appends (``store/expiry.py``)."""

ANNOUNCED: Mapping[EventType, str] = {
    EventType.CREATED: "job.created",
    EventType.STARTED: "job.started",
    EventType.WAITING: "job.waiting",
    EventType.STAGE: "job.stage",
    EventType.RETRYING: "job.retrying",
    EventType.SUCCEEDED: "job.succeeded",
    EventType.PARTIAL: "job.partial",
    EventType.FAILED: "job.failed",
    EventType.CANCELLED: "job.cancelled",
    EventType.RESCUED: "job.rescued",
}
"""The history's event types webhooks announce, and the ``type`` a receiver sees."""
EVENT_TYPES: tuple[str, ...] = (*ANNOUNCED.values(), "job.expired")
"""Every type a subscription may ask for: an expiry is a ``cancelled`` event shown as
``job.expired`` (no job state of its own)."""


def announced_type(event_type: str, data: JSON) -> str | None:
    """The webhook type of a history event (None: not announced)."""
    try:
        name = ANNOUNCED.get(EventType(event_type))
    except ValueError:
        return None
    if name == "job.cancelled" and isinstance(data, dict) and data.get("reason") == EXPIRED_REASON:
        return "job.expired"
    return name


class DeliveryStatus(enum.StrEnum):
    """Where one delivery is: waiting for (another) attempt, received, or given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Subscription:
    """A program's subscription to job events (never its secret: that is shown once)."""

    id: str
    owner: str | None
    url: str
    description: str | None
    event_types: list[str] | None
    kinds: list[str] | None
    queues: list[str] | None
    labels: dict[str, JSON] | None
    allow_private: bool
    enabled: bool
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    previous_secret_until: datetime | None = None

    def matches(self, type_: str, job: Mapping[Any, Any]) -> bool:
        """Whether an event of ``type_`` about ``job`` (a jobs row) is for this subscription."""
        if self.owner is not None and job["owner"] != self.owner:
            return False
        if self.event_types is not None and type_ not in self.event_types:
            return False
        if self.kinds is not None and job["kind"] not in self.kinds:
            return False
        if self.queues is not None and job["queue"] not in self.queues:
            return False
        labels = job["labels"] or {}
        return all(labels.get(k) == v for k, v in (self.labels or {}).items())


@dataclass(frozen=True, slots=True)
class NewSubscription:
    """What a subscription is created with (its URL already vetted)."""

    url: str
    owner: str | None = None
    description: str | None = None
    event_types: Sequence[str] | None = None
    kinds: Sequence[str] | None = None
    queues: Sequence[str] | None = None
    labels: Mapping[str, JSON] | None = None
    allow_private: bool = False
    created_by: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at sending a delivery: the answer's status (None: no answer), how long it
    took, what went wrong, and the start of the answer's body."""

    at: datetime
    status_code: int | None
    duration: float
    error: str | None = None
    response: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one subscription; its id is the ``webhook-id`` of every try."""

    id: str
    subscription_id: str
    job_id: str
    event_id: int
    type: str
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None = None
    last_error: str | None = None
    payload: JSON = None
    tries: list[Attempt] = field(default_factory=list)
    """The attempts, oldest first, where a listing asked for them."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A delivery claimed for sending: what to send, where, signed with which secrets."""

    delivery: Delivery
    lease: str
    url: str
    secrets: tuple[str, ...]
    """The current secret, then the previous one while its overlap lasts."""
    allow_private: bool
    retry_from: datetime


@dataclass(frozen=True, slots=True)
class Sent:
    """One try at an outgoing delivery, and what follows: ``delivered``, ``pending`` again at
    ``next_attempt_at``, or ``failed``."""

    outgoing: Outgoing
    attempt: Attempt
    status: DeliveryStatus
    next_attempt_at: datetime | None = None
