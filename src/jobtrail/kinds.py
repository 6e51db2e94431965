"""Job kinds: what ``@tracker.job`` registers, and the handle it returns for submitting."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar, Unpack

from jobtrail.exceptions import PayloadError
from jobtrail.jobs import JSON, Job, NewJob
from jobtrail.redaction import check_storable
from jobtrail.states import Priority

if TYPE_CHECKING:
    from jobtrail.submitter import Submitter

R = TypeVar("R")


class KindOptions(TypedDict, total=False):
    """How the jobs of a kind run (``@tracker.job(kind, max_attempts=3, ...)``)."""

    max_attempts: int
    """Attempts in all; a handler exception is retried while some remain (default 1)."""
    timeout: float | None
    """Seconds after which a running job is stopped and recorded failed (timed out)."""
    queue: str
    """The queue its jobs go to (default ``default``); workers may consume some queues only."""
    priority: Priority | str
    """The default claim order of its jobs (default ``normal``)."""
    stall_after: float | None
    """Seconds without progress after which a running job is flagged stalled."""
    retry_backoff: float
    """A retry waits about ``retry_backoff * 2**(attempt-1)`` seconds, with jitter."""
    retain_succeeded: float | None
    """Days a succeeded job is kept after it ends (default: ``retention_succeeded_days``)."""
    retain_failed: float | None
    """Days a failed, partial or cancelled job is kept after it ends (default:
    ``retention_other_days``)."""
    expire_after: float | None
    """Seconds a queued job may wait to start (from submit, or its ``run_after``); one not
    started by then ends ``cancelled`` ("expired")."""


@dataclass(frozen=True)
class JobKind:
    """A registered job kind: its handler and how it runs."""

    name: str
    handler: Callable[..., Any]
    max_attempts: int = 1
    timeout: float | None = None
    queue: str = "default"
    priority: Priority = Priority.NORMAL
    stall_after: float | None = None
    retry_backoff: float = 1.0
    retain_succeeded: float | None = None
    retain_failed: float | None = None
    expire_after: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("retain_succeeded", "retain_failed", "expire_after"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value >= 0):
                raise ValueError(f"{name} must be a number of at least 0")

    @classmethod
    def of(cls, name: str, handler: Callable[..., Any], **options: Unpack[KindOptions]) -> JobKind:
        """The kind ``name`` run by ``handler``, with ``options`` (a priority may be its name)."""
        return cls(
            name,
            handler,
            max_attempts=options.get("max_attempts", 1),
            timeout=options.get("timeout"),
            queue=options.get("queue", "default"),
            priority=Priority(options.get("priority", Priority.NORMAL)),
            stall_after=options.get("stall_after"),
            retry_backoff=options.get("retry_backoff", 1.0),
            retain_succeeded=options.get("retain_succeeded"),
            retain_failed=options.get("retain_failed"),
            expire_after=options.get("expire_after"),
        )

    @cached_property
    def _signature(self) -> inspect.Signature:
        return inspect.signature(self.handler)

    def validate(self, payload: Mapping[str, JSON]) -> None:
        """Raise ``PayloadError`` unless ``payload`` binds to the handler and is JSON both
        databases store as given (``check_storable``: e.g. no NaN, no NUL characters)."""
        try:
            self._signature.bind(None, **payload)
        except TypeError as exc:
            raise PayloadError(self.name, str(exc)) from None
        try:
            check_storable(payload)
        except ValueError as exc:
            raise PayloadError(self.name, f"not storable JSON: {exc}") from None

    def new_job(
        self,
        payload: Mapping[str, JSON] | None,
        now: datetime,
        **options: Unpack[SubmitOptions],
    ) -> NewJob:
        """A validated job of this kind, ready to insert (``PayloadError`` if it does not fit);
        with ``expire_after``, it expires that long after ``now`` (the tracker's clock) or its
        ``run_after``."""
        body = dict(payload or {})
        self.validate(body)
        run_after = options.get("run_after")
        if run_after is not None and run_after.tzinfo is None:
            raise ValueError("run_after is a naive datetime; give it a time zone (UTC is stored)")
        priority = options.get("priority")
        return NewJob(
            kind=self.name,
            payload=body,
            key=options.get("key"),
            owner=options.get("owner"),
            trigger=options.get("trigger", "manual"),
            queue=self.queue,
            priority=self.priority if priority is None else Priority(priority),
            labels=dict(options.get("labels") or {}),
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            run_after=run_after,
            expires_at=self._expiry(run_after or now),
        )

    def _expiry(self, start: datetime) -> datetime | None:
        if self.expire_after is None:
            return None
        return start + timedelta(seconds=self.expire_after)


class SubmitOptions(TypedDict, total=False):
    """How a job is submitted (``Tracker.submit``, ``POST /jobs``); every option may be left out."""

    owner: str | None
    key: str | None
    priority: Priority | str | None
    trigger: str
    run_after: datetime | None
    labels: Mapping[str, JSON] | None


class JobHandle(Generic[R]):
    """What ``@tracker.job`` returns: the handler, still callable, plus ``submit``."""

    def __init__(self, submitter: Submitter, kind: JobKind, func: Callable[..., R]) -> None:
        self.submitter = submitter
        self.kind = kind
        self.func = func
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", kind.name)

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self.func(*args, **kwargs)

    def submit(
        self,
        *,
        owner: str | None = None,
        key: str | None = None,
        priority: Priority | str | None = None,
        trigger: str = "manual",
        run_after: datetime | None = None,
        labels: Mapping[str, JSON] | None = None,
        **payload: JSON,
    ) -> Job:
        """Queue a job of this kind with ``payload`` as the handler's keyword arguments."""
        return self.submitter.submit_or_get(
            self.kind.name,
            payload,
            owner=owner,
            key=key,
            priority=priority,
            trigger=trigger,
            run_after=run_after,
            labels=labels,
        )[0]
