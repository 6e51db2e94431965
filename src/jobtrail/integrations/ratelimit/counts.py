"""How often limiters made callers wait: per process for in-memory limiters, in Redis for
limiters whose slots live there, so a server's ``/metrics`` shows every process's waits."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

STATS_KEY = "jobtrail:ratelimit:stats:"
"""Prefix of the Redis hash of one limiter's counts (``acquired``, ``waits``, ``seconds``)."""
NAMES_KEY = "jobtrail:ratelimit:limiters"
"""The Redis set of limiter names that have counts."""


@dataclass(frozen=True)
class WaitStats:
    """Slots taken from one named limiter, how many had to wait, and how long in all."""

    acquired: int = 0
    waits: int = 0
    seconds: float = 0.0

    def plus(self, waited: float | None) -> WaitStats:
        """These counts with one more slot taken, after ``waited`` seconds (None: no wait)."""
        if waited is None:
            return WaitStats(self.acquired + 1, self.waits, self.seconds)
        return WaitStats(self.acquired + 1, self.waits + 1, self.seconds + waited)


_local: dict[str, WaitStats] = {}
_lock = threading.Lock()


def record(name: str, waited: float | None, redis: Any = None) -> None:
    """Count one slot taken from limiter ``name`` after ``waited`` seconds (None: at once):
    in ``redis`` (a client) when given, else in this process."""
    if redis is None:
        with _lock:
            _local[name] = _local.get(name, WaitStats()).plus(waited)
        return
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(STATS_KEY + name, "acquired", 1)
    if waited is not None:
        pipe.hincrby(STATS_KEY + name, "waits", 1)
        pipe.hincrbyfloat(STATS_KEY + name, "seconds", waited)
    pipe.sadd(NAMES_KEY, name)
    pipe.execute()


def local_stats() -> dict[str, WaitStats]:
    """Per limiter name, the counts of this process's in-memory limiters."""
    with _lock:
        return dict(_local)


def shared_stats(redis: Any, names: list[str] | None = None) -> dict[str, WaitStats]:
    """Per limiter name, the counts every process recorded in ``redis`` (only ``names``'
    when given)."""
    if names is None:
        names = [_text(n) for n in redis.smembers(NAMES_KEY)]
    wanted = sorted(names)
    pipe = redis.pipeline(transaction=False)
    for name in wanted:
        pipe.hgetall(STATS_KEY + name)
    found: dict[str, WaitStats] = {}
    for name, fields in zip(wanted, pipe.execute(), strict=True):
        counts = {_text(k): _text(v) for k, v in fields.items()}
        if counts:
            found[name] = WaitStats(
                int(counts.get("acquired", 0)),
                int(counts.get("waits", 0)),
                float(counts.get("seconds", 0.0)),
            )
    return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
