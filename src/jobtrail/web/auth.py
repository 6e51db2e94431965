"""Who is calling and what they may see: bearer tokens looked up per request, per-caller rate
limits, and jobs of other owners answered as absent."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import HTTPConnection

from jobtrail.exceptions import JobNotFound
from jobtrail.jobs import Job
from jobtrail.tracker import Tracker


@dataclass(frozen=True)
class Principal:
    """The caller: a token's name, and its owner (None for an admin, who sees every job)."""

    name: str
    owner: str | None

    @property
    def admin(self) -> bool:
        """Whether the caller sees and acts on every owner's jobs."""
        return self.owner is None

    def may_filter(self, owner: str | None) -> bool:
        """Whether a filter on ``owner`` can match anything this caller may see."""
        return self.owner is None or owner in (None, self.owner)

    def can_see(self, job: Job) -> bool:
        """Whether ``job`` is visible to the caller (invisible jobs are reported as absent)."""
        return self.owner is None or job.owner == self.owner


Authenticate = Callable[[HTTPConnection, str | None], Principal]
"""Turns a request (and its bearer token, if any) into a Principal, or raises a 401."""


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def token_auth(tracker: Tracker) -> Authenticate:
    """Admit bearer tokens the tracker knows (unrevoked), looked up per request."""

    def authenticate(request: HTTPConnection, token: str | None) -> Principal:
        if token is None:
            raise _unauthorized("missing bearer token")
        found = tracker.find_token(token)
        if found is None:
            raise _unauthorized("invalid or revoked token")
        return Principal(found.name, found.owner)

    return authenticate


def open_auth(request: HTTPConnection, token: str | None) -> Principal:
    """Everyone is an admin: only for ``--no-auth`` on a loopback address."""
    return Principal("anonymous", None)


class RateLimit:
    """Per-caller request limits (``limits`` moving windows); over the limit is a 429."""

    def __init__(self, rates: str) -> None:
        self._rates = parse_many(rates)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, key: str) -> None:
        """Count a request of ``key``; raise a 429 with ``Retry-After`` when over a limit."""
        for rate in self._rates:
            if not self._limiter.hit(rate, key):
                reset, _remaining = self._limiter.get_window_stats(rate, key)
                retry = max(int(reset - time.time()) + 1, 1)
                raise HTTPException(
                    429,
                    f"rate limit of {rate} exceeded; retry in {retry} s",
                    headers={"Retry-After": str(retry)},
                )


COOKIE = "jobtrail_token"
"""The dashboard keeps the token in this http-only cookie; the API accepts it too."""

_bearer = HTTPBearer(auto_error=False, description="A token from `jobtrail tokens create`.")


class Gate:
    """Authentication then rate limiting, as configured for one API router."""

    def __init__(self, authenticate: Authenticate, limit: RateLimit) -> None:
        self.authenticate = authenticate
        self.limit = limit

    def admit(self, request: HTTPConnection, token: str | None) -> Principal:
        """The caller of ``request``, counted against its rate limit."""
        caller = self.authenticate(request, token)
        key = caller.name
        if caller.name == "anonymous" and request.client is not None:
            key = request.client.host
        self.limit.check(key)
        return caller

    def caller(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        """The dependency of this router's endpoints: the caller, from the bearer token or
        else the dashboard's cookie, admitted through this gate."""
        token = credentials.credentials if credentials else request.cookies.get(COOKIE)
        return self.admit(request, token)


def visible(tracker: Tracker, job_id: str, caller: Principal) -> Job:
    """The job if ``caller`` may see it; otherwise ``JobNotFound``, exactly as if it did not
    exist."""
    job = tracker.get(job_id)
    if not caller.can_see(job):
        raise JobNotFound(job_id)
    return job
