"""What the Celery integration reads from a Celery message: the job's priority, queue,
owner and trigger headers, and its payload."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from jobtrail.jobs import JSON
from jobtrail.states import Priority

if TYPE_CHECKING:
    from celery import Celery

# Celery priorities run 0 (lowest) to 9 (highest) on Redis with priority queues enabled.
CELERY_PRIORITY = {Priority.LOW: 0, Priority.NORMAL: 3, Priority.HIGH: 6, Priority.URGENT: 9}
OWNER_HEADER = "jobtrail_owner"
TRIGGER_HEADER = "jobtrail_trigger"


REVERSED_PRIORITY_SCHEMES = ("redis", "rediss", "sentinel")
"""Brokers on which Celery serves priority 0 first (its Redis transport); on the others
(RabbitMQ) 9 is served first."""


def priority_of(value: Any, zero_first: bool = False) -> Priority:
    """jobtrail's priority for a Celery message priority (0–9); ``zero_first``: the broker
    serves 0 first (Redis), so 0 is urgent and 9 low."""
    if not isinstance(value, int):
        return Priority.NORMAL
    if zero_first:
        value = 9 - value
    return max((p for p, n in CELERY_PRIORITY.items() if value >= n), key=lambda p: p.rank)


def serves_zero_first(app: Celery) -> bool:
    """Whether ``app``'s broker serves priority 0 first (Redis) rather than 9 (RabbitMQ)."""
    url = str(app.conf.broker_url or "")
    return url.partition("://")[0].split("+")[0] in REVERSED_PRIORITY_SCHEMES


MAX_QUEUE = 100
"""The longest queue name a job record holds."""


def queue_of(app: Celery, routing_key: Any = None, declare: Any = None) -> str:
    """The Celery queue a task is sent to — the queue declared for it, else its routing key
    (the queue's name under Celery's default routing), else ``task_default_queue`` — so
    its job is on the queue a Celery worker of it consumes (``celery`` by default)."""
    names = (getattr(queue, "name", None) for queue in declare or ())
    declared = next((name for name in names if isinstance(name, str) and name), None)
    name = declared or routing_key or app.conf.task_default_queue
    return str(name)[:MAX_QUEUE]


def payload_of(body: Any) -> JSON:
    """``{"args": …, "kwargs": …}`` from a protocol-2 message body, JSON-safe."""
    args, kwargs = (
        (body[0], body[1]) if isinstance(body, list | tuple) and len(body) >= 2 else ((), {})
    )
    return json_safe({"args": list(args), "kwargs": dict(kwargs)})


def json_safe(value: Any) -> JSON:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return repr(value)
