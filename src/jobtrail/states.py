"""The states of a job and the one table of legal moves between them, its priorities and the
kinds of entries in its history: values and rules, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping


class Status(enum.StrEnum):
    """Where a job is in its life; one vocabulary for the store, API, CLI and dashboard."""

    QUEUED = "queued"
    WAITING = "waiting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for the states a job never leaves."""
        return self in TERMINAL


TERMINAL: frozenset[Status] = frozenset(
    {Status.SUCCEEDED, Status.PARTIAL, Status.FAILED, Status.CANCELLED}
)
ACTIVE: frozenset[Status] = frozenset({Status.QUEUED, Status.WAITING, Status.RUNNING})
RETRYABLE: frozenset[Status] = frozenset({Status.FAILED, Status.PARTIAL, Status.CANCELLED})
HELD: frozenset[Status] = frozenset({Status.RUNNING, Status.WAITING})
"""States in which a runner holds a job (by its lease) and may write its progress."""

TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.WAITING, Status.CANCELLED}),
    Status.WAITING: frozenset({Status.RUNNING, Status.QUEUED, Status.CANCELLED, Status.FAILED}),
    Status.RUNNING: frozenset(
        {
            Status.QUEUED,
            Status.WAITING,
            Status.SUCCEEDED,
            Status.PARTIAL,
            Status.FAILED,
            Status.CANCELLED,
        }
    ),
    Status.SUCCEEDED: frozenset(),
    Status.PARTIAL: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}
"""Every legal status change; every path that changes a status goes through this table."""


def can_transition(source: Status, target: Status) -> bool:
    """Whether a job in ``source`` may move to ``target``."""
    return target in TRANSITIONS[source]


def sources_of(target: Status, among: Iterable[Status] | None = None) -> frozenset[Status]:
    """The states from which a job may move to ``target`` (only those ``among`` when given).

    Every status-changing statement takes its source states from here; asking for a move the
    table does not allow from any of ``among`` is a programming error (``ValueError``).
    """
    sources = _SOURCES[target]
    if among is None:
        return sources
    allowed = sources & frozenset(among)
    if not allowed:
        names = ", ".join(sorted(s.value for s in among))
        raise ValueError(f"TRANSITIONS allows no move from {names} to {target.value}")
    return allowed


_SOURCES: Mapping[Status, frozenset[Status]] = {
    target: frozenset(s for s, targets in TRANSITIONS.items() if target in targets)
    for target in Status
}


class Priority(enum.StrEnum):
    """Claim order among queued jobs: higher priorities are claimed first."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        """The number stored in the database; larger is claimed first."""
        return _RANKS[self]

    @classmethod
    def from_rank(cls, rank: int) -> Priority:
        """The priority stored as ``rank``."""
        return _BY_RANK[rank]


_RANKS = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}
_BY_RANK = {rank: priority for priority, rank in _RANKS.items()}


class EventType(enum.StrEnum):
    """Kinds of entries in a job's history."""

    CREATED = "created"
    STARTED = "started"
    PROGRESS = "progress"
    ITEM_FAILED = "item_failed"
    LOG = "log"
    RETRYING = "retrying"
    RESCUED = "rescued"
    INTERRUPTED = "interrupted"
    CANCEL_REQUESTED = "cancel_requested"
    STALLED = "stalled"
    STAGE = "stage"
    """The job entered a named stage (``ctx.stage``); never coalesced with other events."""
    WAITING = "waiting"
    RESUMED = "resumed"
    """A wait ended: a worker consumes the queue again, or the handler reported again."""
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


def outcome(items_succeeded: int, items_failed: int) -> Status:
    """The terminal status of a handler that returned normally, from its item counts."""
    if items_failed == 0:
        return Status.SUCCEEDED
    if items_succeeded == 0:
        return Status.FAILED
    return Status.PARTIAL
