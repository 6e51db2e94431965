"""Job kinds: what ``@tracker.job`` registers, and the handle it returns for submitting."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from jobtrail.exceptions import PayloadError
from jobtrail.jobs import JSON, Job, Priority

if TYPE_CHECKING:
    from jobtrail.tracker import Tracker

P = ParamSpec("P")
R = TypeVar("R")


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

    def validate(self, payload: Mapping[str, JSON]) -> None:
        """Raise ``PayloadError`` unless ``payload`` binds to the handler and is JSON."""
        try:
            inspect.signature(self.handler).bind(None, **payload)
        except TypeError as exc:
            raise PayloadError(self.name, str(exc)) from None
        try:
            json.dumps(payload, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise PayloadError(self.name, f"not JSON-serializable: {exc}") from None


class JobHandle(Generic[P, R]):
    """What ``@tracker.job`` returns: the handler, still callable, plus ``submit``."""

    def __init__(self, tracker: Tracker, kind: JobKind, func: Callable[..., R]) -> None:
        self.tracker = tracker
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
        return self.tracker.submit(
            self.kind.name,
            payload,
            owner=owner,
            key=key,
            priority=priority,
            trigger=trigger,
            run_after=run_after,
            labels=labels,
        )
