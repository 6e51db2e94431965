"""Token buckets as GCRA (the generic cell rate algorithm): one stored time per limiter, in
this process or in Redis, so ``burst`` calls go back to back and then one every ``1/rate``.

``limits`` only has windows of whole seconds, and no mix of them is a bucket (a second
window of 1 per 0.1 s cannot be written), so this is the one piece done here; it uses the
Redis connection ``limits`` already made for the limiter's storage.
"""

from __future__ import annotations

import threading
import time
from typing import Any

BUCKET_KEY = "jobtrail:ratelimit:bucket:"

# KEYS[1]: the bucket; ARGV: interval, tolerance (seconds). Redis's own clock, so hosts'
# clocks need not agree. Returns "0" when a slot was taken, else the seconds to wait.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return string.format('%.6f', wait) end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.6f', next_tat), 'PX',
  math.ceil((next_tat - now) * 1000) + 1000)
return '0'
"""

_tats: dict[str, float] = {}
"""The theoretical arrival time (monotonic) of each in-process bucket's next token."""
_lock = threading.Lock()


class Bucket:
    """A token bucket of ``burst`` tokens refilled one every ``interval`` seconds, stored
    under ``key`` in ``redis`` (a client) or, without one, in this process."""

    def __init__(self, key: str, interval: float, burst: int, redis: Any = None) -> None:
        self.key = BUCKET_KEY + key
        self.interval = interval
        self.tolerance = (burst - 1) * interval
        self._script = None if redis is None else redis.register_script(_SCRIPT)

    def attempt(self) -> float:
        """Take a token if one is there (0.0); else the seconds until one will be."""
        if self._script is not None:
            answer = self._script(keys=[self.key], args=[self.interval, self.tolerance])
            return float(answer.decode() if isinstance(answer, bytes) else answer)
        with _lock:
            now = time.monotonic()
            tat = max(_tats.get(self.key, now), now)
            wait = tat - self.tolerance - now
            if wait > 0:
                return wait
            _tats[self.key] = tat + self.interval
            return 0.0
