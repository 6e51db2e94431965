"""Outage: a database that stopped answering, logged as one line when the loops that keep
calling it (claims, heartbeats, maintenance) first meet it, one a minute while it lasts and
one when a store call succeeds again — not a line, or a traceback, per failed call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from jobtrail.exceptions import StoreError, StoreUnavailable
from jobtrail.logs import logger

REMIND_SECONDS = 60.0
"""How often an outage that lasts is logged again, with how many failures it caused."""

log = logger("jobtrail.store")


class Outage:
    """Whether one database is away, as the calls made to it tell."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._told = 0.0
        self._failures = 0

    @property
    def ongoing(self) -> bool:
        """Whether a failure was noted and no call has succeeded since."""
        return self._since is not None

    def noted(self, error: StoreError, during: str) -> bool:
        """Note that ``during`` failed with ``error``. True when the database is away: the
        outage is logged here (when it begins, then every ``REMIND_SECONDS``) and the caller
        logs nothing; False for any other failure, which the caller logs itself."""
        if not isinstance(error, StoreUnavailable):
            return False
        now = self._clock()
        with self._lock:
            self._failures += 1
            if self._since is None:
                self._since = self._told = now
                event = "database unavailable; calls are retried quietly until it answers"
            elif now - self._told >= REMIND_SECONDS:
                self._told = now
                event = "database still unavailable"
            else:
                return True
            seconds, failures = round(now - self._since, 1), self._failures
        log.warning(event, error=error.reason, during=during, seconds=seconds, failures=failures)
        return True

    def ended(self) -> None:
        """A call succeeded: log the end of the outage, if there is one."""
        if self._since is None:  # the common case, read without the lock
            return
        with self._lock:
            since, failures = self._since, self._failures
            self._since, self._failures = None, 0
        if since is not None:
            seconds = round(self._clock() - since, 1)
            log.warning("database available again", seconds=seconds, failures=failures)
