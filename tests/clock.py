"""A clock tests move by hand, so timestamps and durations are exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)  # a Saturday
"""Where a ``FakeClock`` starts unless told otherwise."""


class FakeClock:
    """A clock the test moves by hand (set ``now`` or ``advance``); several trackers may share
    one."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
