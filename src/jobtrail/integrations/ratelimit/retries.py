"""Retries of outgoing HTTP calls for job code (honouring ``Retry-After``, backing off on 5xx),
and an httpx transport that combines them with a limiter."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter

from jobtrail.exceptions import MissingExtra
from jobtrail.integrations.ratelimit.limiters import Limiter, pause, seconds_text
from jobtrail.jobs import JSON

try:
    import httpx
except ImportError as exc:
    raise MissingExtra("ratelimit", "jobtrail.integrations.ratelimit", ["httpx"]) from exc

if TYPE_CHECKING:
    from jobtrail.context import Context

P = ParamSpec("P")
R = TypeVar("R")

RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    ConnectionError,
    TimeoutError,
)
"""Errors worth another attempt: the request may not have reached the server, or timed out."""


# -- retries --------------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP-date).

    None when the header is absent or unreadable; a date in the past means 0.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying: a 429 or 5xx response, a connection error, a timeout."""
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code == 429 or 500 <= code < 600
    return isinstance(exc, RETRYABLE_ERRORS)


def _checked(result: R) -> R:
    """Raise ``HTTPStatusError`` for an error response, so a returned 503 counts as a failure."""
    if isinstance(result, httpx.Response) and result.is_error:
        result.read()
        result.raise_for_status()
    return result


def _failure(state: RetryCallState) -> BaseException | None:
    return None if state.outcome is None else state.outcome.exception()


def _describe(exc: BaseException | None) -> tuple[str, dict[str, JSON]]:
    """``"HTTP 503 from example.com"`` and the event data that goes with it."""
    host: str | None = None
    if isinstance(exc, httpx.HTTPError):
        try:
            host = exc.request.url.host
        except RuntimeError:  # an error raised without its request
            host = None
    where = f" from {host}" if host else ""
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        return f"HTTP {status}{where}", {"status": status, "host": host}
    error = type(exc).__name__
    return f"{error}{where}", {"error": error, "host": host}


class _Retrier(ABC):
    """``call`` and ``@decorator`` for anything that runs a function under a tenacity policy."""

    @abstractmethod
    def _retrying(self) -> Retrying: ...

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)``, retrying it by the policy; an error response
        (``httpx.Response`` with a 4xx/5xx status) it returns counts as a raised
        ``httpx.HTTPStatusError``. Once retries are spent the last error is raised."""
        return self._retrying()(lambda: _checked(fn(*args, **kwargs)))

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``fn`` so every call is retried by the policy."""

        @functools.wraps(fn)
        def retried(*args: P.args, **kwargs: P.kwargs) -> R:
            return self.call(fn, *args, **kwargs)

        return retried


@dataclass(frozen=True)
class RetryPolicy(_Retrier):
    """When to retry an outgoing call and how long to wait, built on ``tenacity``.

    Retries a 429 or 5xx response (raised as ``httpx.HTTPStatusError`` or returned as an
    ``httpx.Response``), connection errors and timeouts, at most ``max_attempts`` attempts
    in all. It waits as long as the response's ``Retry-After`` says, else ``backoff * 2**n``
    seconds plus up to ``backoff`` of jitter, never more than ``max_wait``; a ``Retry-After``
    longer than ``max_wait`` is not worth holding the job for, so the error is raised at once,
    as is any other 4xx. ``policy.bound(ctx)`` records each wait as a job event and stops
    waiting when the job must stop.
    """

    max_attempts: int = 5
    max_wait: float = 60.0
    backoff: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_wait < 0 or self.backoff < 0:
            raise ValueError("max_wait and backoff must not be negative")

    def bound(self, ctx: Context) -> BoundRetryPolicy:
        """This policy for one job: each wait becomes a ``log`` event in the job's history."""
        return BoundRetryPolicy(self, ctx)

    def retrying(self, ctx: Context | None = None) -> Retrying:
        """A tenacity ``Retrying`` that applies this policy (and reports waits to ``ctx``)."""
        return Retrying(
            retry=retry_if_exception(is_transient),
            wait=self._wait,
            stop=self._stop,
            sleep=functools.partial(pause, ctx=ctx),
            before_sleep=None if ctx is None else functools.partial(self._report, ctx),
            reraise=True,
        )

    def _retrying(self) -> Retrying:
        return self.retrying()

    def _wait(self, state: RetryCallState) -> float:
        exc = _failure(state)
        if isinstance(exc, httpx.HTTPStatusError):
            asked = parse_retry_after(exc.response.headers.get("Retry-After"))
            if asked is not None:
                return asked
        backoff = wait_exponential_jitter(
            multiplier=self.backoff, max=self.max_wait, jitter=self.backoff
        )
        return backoff(state)

    def _stop(self, state: RetryCallState) -> bool:
        # Runs after _wait: only a Retry-After can ask for more than max_wait.
        return state.attempt_number >= self.max_attempts or state.upcoming_sleep > self.max_wait

    def _report(self, ctx: Context, state: RetryCallState) -> None:
        cause, data = _describe(_failure(state))
        attempt, wait = state.attempt_number + 1, state.upcoming_sleep
        left = f"attempt {attempt} of {self.max_attempts}"
        ctx.log(
            f"{cause}, retrying in {seconds_text(wait)} s ({left})",
            wait=round(wait, 3),
            attempt=attempt,
            max_attempts=self.max_attempts,
            **data,
        )


class BoundRetryPolicy(_Retrier):
    """A retry policy used by one job: waits are recorded as the job's events, and stop it."""

    def __init__(self, policy: RetryPolicy, ctx: Context) -> None:
        self.policy = policy
        self.ctx = ctx

    def _retrying(self) -> Retrying:
        return self.policy.retrying(self.ctx)


# -- httpx ----------------------------------------------------------------------------------


class LimitedTransport(httpx.BaseTransport):
    """An httpx transport that takes a limiter slot before every attempt and retries by a policy.

    ``httpx.Client(transport=LimitedTransport(limiter, policy, ctx=ctx))`` gives a job's
    client both. Like any transport it returns error responses — after a retried status, the
    last one once the attempts are spent — and raises connection errors after the last attempt.
    Request bodies must be re-sendable (bytes, not a generator) for retries.
    """

    def __init__(
        self,
        limiter: Limiter | None = None,
        policy: RetryPolicy | None = None,
        *,
        ctx: Context | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.limiter = limiter
        self.policy = policy or RetryPolicy(max_attempts=1)
        self.ctx = ctx
        self._inner = transport or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the limiter, retrying by the policy."""
        try:
            return self.policy.retrying(self.ctx)(self._attempt, request)
        except httpx.HTTPStatusError as exc:
            return exc.response

    def _attempt(self, request: httpx.Request) -> httpx.Response:
        if self.limiter is not None:
            self.limiter.acquire(self.ctx)
        response = self._inner.handle_request(request)
        response.request = request
        return _checked(response)

    def close(self) -> None:
        """Close the wrapped transport."""
        self._inner.close()
