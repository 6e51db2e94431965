"""Outgoing rate limits for job code: named limiters, HTTP retries and an httpx transport."""

from jobtrail.integrations.ratelimit.counts import WaitStats
from jobtrail.integrations.ratelimit.limiters import (
    CHECK_INTERVAL,
    BoundLimiter,
    Limiter,
    RateLimitTimeout,
    wait_stats,
)
from jobtrail.integrations.ratelimit.retries import (
    RETRYABLE_ERRORS,
    BoundRetryPolicy,
    LimitedTransport,
    RetryPolicy,
    is_transient,
    parse_retry_after,
)

__all__ = [
    "CHECK_INTERVAL",
    "RETRYABLE_ERRORS",
    "BoundLimiter",
    "BoundRetryPolicy",
    "LimitedTransport",
    "Limiter",
    "RateLimitTimeout",
    "RetryPolicy",
    "WaitStats",
    "is_transient",
    "parse_retry_after",
    "wait_stats",
]
