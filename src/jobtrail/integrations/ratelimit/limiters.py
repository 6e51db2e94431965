"""Named outgoing rate limiters for job code: slots shared by name (through Redis across
processes), waits that honour a job's stop requests, and per-limiter wait counts for metrics
(shared through Redis too)."""

from __future__ import annotations

import functools
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from jobtrail.exceptions import JobtrailError, MissingExtra
from jobtrail.integrations.ratelimit.buckets import Bucket
from jobtrail.integrations.ratelimit.counts import WaitStats, local_stats, record, shared_stats
from jobtrail.logs import logger

try:
    import limits
    from limits.storage import RedisStorage, storage_from_string
    from limits.strategies import MovingWindowRateLimiter
except ImportError as exc:
    raise MissingExtra("ratelimit", "jobtrail.integrations.ratelimit", ["limits"]) from exc

if TYPE_CHECKING:
    from jobtrail.context import Context

P = ParamSpec("P")
R = TypeVar("R")

CHECK_INTERVAL = 0.25
"""How often (seconds) a job that waits checks whether it must stop."""
_NAMESPACE = "jobtrail"
_SLACK = 0.001  # a slot frees strictly after its window; aim just past the edge
log = logger("jobtrail.ratelimit")


class RateLimitTimeout(JobtrailError):
    """No slot of a limiter would be free within the time the caller was willing to wait."""

    def __init__(self, limiter: str, timeout: float) -> None:
        self.limiter = limiter
        self.timeout = timeout
        super().__init__(f"no slot of limiter {limiter!r} is free within {timeout:g} s")


def seconds_text(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def pause(seconds: float, ctx: Context | None = None) -> None:
    """Sleep ``seconds``; with a ``ctx``, raise at once (``ctx.check()``) if the job must stop."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if ctx is not None:
            ctx.check()
        time.sleep(left if ctx is None else min(left, CHECK_INTERVAL))


def wait_stats(storage_url: str | None = None) -> dict[str, WaitStats]:
    """Per limiter name, the slots taken and waits made (for metrics): by this process's
    in-memory limiters, plus, with the URL of a Redis storage, those every process recorded
    there."""
    stats = local_stats()
    backend = None if storage_url is None else _backend(storage_url)
    if backend is None or backend.redis is None:
        return stats
    try:
        return stats | shared_stats(backend.redis)
    except backend.errors as exc:  # metrics go on without them while Redis is away
        log.warning("cannot read shared limiter counts", storage=storage_url, error=str(exc))
        return stats


# -- storages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Backend:
    strategy: MovingWindowRateLimiter
    lock: AbstractContextManager[object]
    redis: Any
    """The storage's Redis client, or None (memory: slots and counts stay in this process)."""
    errors: tuple[type[BaseException], ...]
    """What the storage raises when it cannot be reached."""


_backends: dict[str, _Backend] = {}
_backends_lock = threading.Lock()


def _backend(url: str) -> _Backend:
    """One storage per URL, so limiters of one name share their slots within the process too."""
    with _backends_lock:
        if url not in _backends:
            # limits' memory storage can drop a key's lock while a thread waits on it (its
            # expiry timer), so in-process hits are serialised here; Redis scripts are atomic.
            lock = threading.Lock() if url.startswith("memory:") else nullcontext()
            storage = storage_from_string(url)
            redis = storage.get_connection() if isinstance(storage, RedisStorage) else None
            errors = storage.base_exceptions
            if not isinstance(errors, tuple):
                errors = (errors,)
            strategy = MovingWindowRateLimiter(storage)
            _backends[url] = _Backend(strategy, lock, redis, errors)
        return _backends[url]


class _Window:
    """Slots of a moving window (``limits``): never more than ``amount`` in any window."""

    def __init__(self, backend: _Backend, item: limits.RateLimitItem, name: str) -> None:
        self.backend = backend
        self.item = item
        self.name = name

    def attempt(self) -> float:
        """Take a slot if one is free (0.0); else the seconds until the oldest one frees."""
        with self.backend.lock:
            if self.backend.strategy.hit(self.item, self.name):
                return 0.0
            window = self.backend.strategy.get_window_stats(self.item, self.name)
        if window.remaining > 0:
            return _SLACK  # a slot freed between our hit and this look
        return max(window.reset_time - time.time(), 0.0) + _SLACK


def _rate(rate: str) -> tuple[int, int]:
    """``rate`` (``limits`` notation) as (calls, seconds)."""
    item = limits.parse(rate)
    if item.amount < 1:
        raise ValueError(f"rate {rate!r} allows no requests at all")
    return item.amount, item.get_expiry()


class _Gate(ABC):
    """``with gate:`` and ``@gate`` for anything that waits for a slot before work runs."""

    @abstractmethod
    def _take(self) -> float: ...

    def __enter__(self) -> float:
        return self._take()

    def __exit__(self, *exc_info: object) -> None:
        return None

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` so every call first waits for a slot."""

        @functools.wraps(fn)
        def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            self._take()
            return fn(*args, **kwargs)

        return limited


class Limiter(_Gate):
    """A named, thread-safe rate limit on outgoing calls.

    ``rate`` is ``limits`` notation (``"10/second"``, ``"600 per minute"``). Without
    ``burst`` it is a moving window (``limits``): never more than the rate's amount in any
    window of its period, as an upstream's quota counts. With ``burst`` it is a token bucket:
    ``burst`` calls may go back to back, then one every ``1 / rate`` (``"10/second",
    burst=20``: 20 at once, then one every 0.1 s).

    Left out, ``rate`` and ``storage_url`` come from the ``JOBTRAIL_RATELIMIT_DEFAULT_RATE``
    and ``JOBTRAIL_RATELIMIT_STORAGE_URL`` settings. Limiters of one name and rate share
    their slots: within the process with ``memory://``, across processes and machines with
    ``redis://host:6379/0`` (Redis keeps the slots, and the wait counts that ``/metrics``
    shows). ``with limiter:``, ``@limiter`` and ``limiter.acquire()`` wait for a slot,
    ``limiter.try_acquire()`` never waits; ``limiter.bound(ctx)`` waits for a job, recording
    waits longer than ``report_after`` seconds in its history.
    """

    def __init__(
        self,
        name: str,
        rate: str | None = None,
        *,
        burst: int | None = None,
        storage_url: str | None = None,
        report_after: float = 0.1,
    ) -> None:
        if rate is None or storage_url is None:
            from jobtrail.settings import Settings

            settings = Settings()
            rate = rate or settings.ratelimit_default_rate
            storage_url = storage_url or settings.ratelimit_storage_url
        amount, seconds = _rate(rate)
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        self.name = name
        self.rate = rate
        self.burst = amount if burst is None else burst
        self.window = float(seconds) if burst is None else burst * seconds / amount
        """Seconds in which ``burst`` calls may go: the window, or the time to refill."""
        self.report_after = report_after
        self._backend = _backend(storage_url)
        self._slots: _Window | Bucket
        if burst is None:
            item = limits.RateLimitItemPerSecond(amount, seconds, namespace=_NAMESPACE)
            self._slots = _Window(self._backend, item, name)
        else:
            key = f"{name}:{amount}/{seconds}:{burst}"
            self._slots = Bucket(key, seconds / amount, burst, self._backend.redis)

    def __repr__(self) -> str:
        kind = "per" if isinstance(self._slots, _Window) else "at once, refilled in"
        return f"Limiter({self.name!r}, {self.burst} {kind} {self.window:g} s)"

    def acquire(self, ctx: Context | None = None, timeout: float | None = None) -> float:
        """Take a slot, waiting until one is free; return the seconds waited (0.0: none).

        With ``ctx``, a wait longer than ``report_after`` is recorded as a ``log`` event and
        the job's stop requests are honoured while waiting (``ctx.check()`` raises). Raises
        ``RateLimitTimeout``, without waiting, if no slot will be free within ``timeout``.
        """
        delay = self._slots.attempt()
        waited = None if delay == 0.0 else self._wait(delay, ctx, timeout)
        record(self.name, waited, self._backend.redis)
        return waited or 0.0

    def try_acquire(self) -> bool:
        """Take a slot if one is free right now; never waits. False: none is."""
        taken = self._slots.attempt() == 0.0
        if taken:
            record(self.name, None, self._backend.redis)
        return taken

    def bound(self, ctx: Context) -> BoundLimiter:
        """This limiter for one job: ``with limiter.bound(ctx):`` records waits as job events."""
        return BoundLimiter(self, ctx)

    def stats(self) -> WaitStats:
        """Slots taken and waits made under this limiter's name: by every process when its
        storage is Redis, else by this one."""
        redis = self._backend.redis
        if redis is None:
            return local_stats().get(self.name, WaitStats())
        return shared_stats(redis, [self.name]).get(self.name, WaitStats())

    def _take(self) -> float:
        return self.acquire()

    def _wait(self, delay: float, ctx: Context | None, timeout: float | None) -> float:
        started = time.monotonic()
        reported = False
        while True:
            expected = time.monotonic() - started + delay
            if timeout is not None and expected > timeout:
                raise RateLimitTimeout(self.name, timeout)
            if ctx is not None and not reported and expected >= self.report_after:
                reported = True
                ctx.log(
                    f"rate limited by {self.name!r}, waiting {seconds_text(expected)} s",
                    limiter=self.name,
                    wait=round(expected, 3),
                )
            pause(delay, ctx)
            delay = self._slots.attempt()
            if delay == 0.0:
                return time.monotonic() - started


class BoundLimiter(_Gate):
    """A limiter used by one job: waits are recorded as the job's events, and stop it."""

    def __init__(self, limiter: Limiter, ctx: Context) -> None:
        self.limiter = limiter
        self.ctx = ctx

    def acquire(self, timeout: float | None = None) -> float:
        """Take a slot for the job (see ``Limiter.acquire``); return the seconds waited."""
        return self.limiter.acquire(self.ctx, timeout)

    def _take(self) -> float:
        return self.acquire()
