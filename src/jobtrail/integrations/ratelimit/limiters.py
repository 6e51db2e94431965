"""Named outgoing rate limiters for job code: slots shared by name (through Redis across
processes), waits that honour a job's stop requests, and per-limiter wait counts for metrics."""

from __future__ import annotations

import functools
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from jobtrail.exceptions import JobtrailError, MissingExtra

try:
    import limits
    from limits.storage import storage_from_string
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


# -- wait statistics ------------------------------------------------------------------------


@dataclass(frozen=True)
class WaitStats:
    """Slots taken from one named limiter in this process, how many had to wait, and how long."""

    acquired: int = 0
    waits: int = 0
    seconds: float = 0.0

    def plus(self, waited: float | None) -> WaitStats:
        """These counts with one more slot taken, after ``waited`` seconds (None: no wait)."""
        if waited is None:
            return WaitStats(self.acquired + 1, self.waits, self.seconds)
        return WaitStats(self.acquired + 1, self.waits + 1, self.seconds + waited)


_stats: dict[str, WaitStats] = {}
_stats_lock = threading.Lock()


def _count(name: str, waited: float | None) -> None:
    with _stats_lock:
        _stats[name] = _stats.get(name, WaitStats()).plus(waited)


def wait_stats() -> dict[str, WaitStats]:
    """Per limiter name, the slots taken and waits made by this process so far (for metrics)."""
    with _stats_lock:
        return dict(_stats)


# -- limiters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Backend:
    strategy: MovingWindowRateLimiter
    lock: AbstractContextManager[object]


_backends: dict[str, _Backend] = {}
_backends_lock = threading.Lock()


def _backend(url: str) -> _Backend:
    """One storage per URL, so limiters of one name share their slots within the process too."""
    with _backends_lock:
        if url not in _backends:
            # limits' memory storage can drop a key's lock while a thread waits on it (its
            # expiry timer), so in-process hits are serialised here; Redis scripts are atomic.
            lock = threading.Lock() if url.startswith("memory:") else nullcontext()
            strategy = MovingWindowRateLimiter(storage_from_string(url))
            _backends[url] = _Backend(strategy, lock)
        return _backends[url]


def _window(rate: str, burst: int | None) -> limits.RateLimitItem:
    """The moving window that enforces ``rate`` and lets ``burst`` requests go back to back."""
    item = limits.parse(rate)
    amount, seconds = item.amount, item.get_expiry()
    if amount < 1:
        raise ValueError(f"rate {rate!r} allows no requests at all")
    if burst is not None:
        if burst < 1 or burst * seconds % amount:
            step = amount // math.gcd(amount, seconds)
            raise ValueError(
                f"burst {burst} of {rate!r} needs a window of {burst * seconds / amount:g} s; "
                f"windows are whole seconds, so use a multiple of {step}"
            )
        amount, seconds = burst, burst * seconds // amount
    return limits.RateLimitItemPerSecond(amount, seconds, namespace=_NAMESPACE)


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
    """A named, thread-safe rate limit on outgoing calls, built on ``limits``' moving window.

    ``rate`` is ``limits`` notation (``"10/second"``, ``"600 per minute"``). The window never
    holds more than ``burst`` slots, so that many calls may go back to back, and the average
    stays at ``rate``: ``burst`` sets the window to ``burst / rate`` seconds. Left out, the
    window is the rate's own (``"600/minute"`` lets 600 go at once, ``"10/second"`` 10).
    Windows are whole seconds, so ``Limiter("api", "10/second", burst=30)`` (30 per 3 s) is
    fine and ``burst=5`` (0.5 s) is refused.

    Limiters of one name and rate share their slots: within the process by default
    (``memory://``), across processes and machines with ``storage_url="redis://host:6379/0"``
    (Redis keeps the window; hosts' clocks should agree). ``with limiter:``, ``@limiter`` and
    ``limiter.acquire()`` wait for a slot; ``limiter.bound(ctx)`` does the same for a job,
    recording waits longer than ``report_after`` seconds in its history.
    """

    def __init__(
        self,
        name: str,
        rate: str = "10/second",
        *,
        burst: int | None = None,
        storage_url: str | None = None,
        report_after: float = 0.1,
    ) -> None:
        self.name = name
        self.rate = rate
        self._item = _window(rate, burst)
        self.burst = self._item.amount
        self.window = float(self._item.get_expiry())
        self.report_after = report_after
        self._backend = _backend(storage_url or "memory://")

    def __repr__(self) -> str:
        return f"Limiter({self.name!r}, {self.burst} per {self.window:g} s)"

    def acquire(self, ctx: Context | None = None, timeout: float | None = None) -> float:
        """Take a slot, waiting until one is free; return the seconds waited (0.0: none).

        With ``ctx``, a wait longer than ``report_after`` is recorded as a ``log`` event and
        the job's stop requests are honoured while waiting (``ctx.check()`` raises). Raises
        ``RateLimitTimeout``, without waiting, if no slot will be free within ``timeout``.
        """
        if self._hit():
            _count(self.name, None)
            return 0.0
        waited = self._wait(ctx, timeout)
        _count(self.name, waited)
        return waited

    def bound(self, ctx: Context) -> BoundLimiter:
        """This limiter for one job: ``with limiter.bound(ctx):`` records waits as job events."""
        return BoundLimiter(self, ctx)

    def stats(self) -> WaitStats:
        """Slots taken and waits made under this limiter's name in this process."""
        with _stats_lock:
            return _stats.get(self.name, WaitStats())

    def _take(self) -> float:
        return self.acquire()

    def _hit(self) -> bool:
        with self._backend.lock:
            return self._backend.strategy.hit(self._item, self.name)

    def _delay(self) -> float:
        """Seconds until the oldest slot in the window frees up."""
        with self._backend.lock:
            window = self._backend.strategy.get_window_stats(self._item, self.name)
        if window.remaining > 0:
            return _SLACK  # a slot freed between our hit and this look
        return max(window.reset_time - time.time(), 0.0) + _SLACK

    def _wait(self, ctx: Context | None, timeout: float | None) -> float:
        started = time.monotonic()
        reported = False
        while True:
            delay = self._delay()
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
            if self._hit():
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
