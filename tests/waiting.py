"""Waiting on state: tests poll the store until a condition holds, with a deadline, never sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

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


def until_answers(
    url: str,
    timeout: float = 30.0,
    *,
    what: str,
    alive: Callable[[], object] | None = None,
    poll: float = 0.05,
) -> None:
    """Poll ``url`` until it answers 200, with one client for every poll (a new client costs
    about 20 ms of CPU); ``alive`` is called first each time, to fail at once when the server
    process has exited."""
    with httpx.Client(timeout=2.0) as client:

        def answers() -> bool:
            if alive is not None:
                alive()
            try:
                return client.get(url).status_code == 200
            except httpx.TransportError:
                return False

        until(answers, timeout, what=what, poll=poll)


def event_types(tracker: Tracker, job_id: str) -> list[str]:
    """The types of a job's events, oldest first."""
    return [e.type for e in tracker.events(job_id)]
