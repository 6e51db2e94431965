"""Waiting on state: tests poll the store until a condition holds, with a deadline, never sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from jobtrail import Tracker

T = TypeVar("T")


def until(
    probe: Callable[[], T],
    timeout: float = 10.0,
    *,
    what: str = "the condition",
    poll: float = 0.02,
) -> T:
    """Call ``probe`` until it returns something truthy and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}; last saw {value!r}")
        time.sleep(poll)


def event_types(tracker: Tracker, job_id: str) -> list[str]:
    """The types of a job's events, oldest first."""
    return [e.type for e in tracker.events(job_id)]
