"""Who is calling and what they may see: bearer tokens looked up per request, per-caller rate
limits, and jobs of other owners answered as absent."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import HTTPConnection

from jobtrail.exceptions import JobNotFound
from jobtrail.jobs import Job
from jobtrail.logs import logger
from jobtrail.tracker import Tracker
from jobtrail.web.origins import SAFE_METHODS, Origins

log = logger("jobtrail.web")


@dataclass(frozen=True)
class Principal:
    """The caller: a token's name, and its owner (None for an admin, who sees every job)."""

    name: str
    owner: str | None

    @property
    def admin(self) -> bool:
        """Whether the caller sees and acts on every owner's jobs."""
        return self.owner is None

    def scope(self, owner: str | None) -> str | None:
        """The owner a listing of this caller is limited to: its own, or (an admin) the one
        it asks for."""
        return owner if self.owner is None else self.owner

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
        found = tracker.ops.find_token(token)
        if found is None:
            raise _unauthorized("invalid or revoked token")
        return Principal(found.name, found.owner)

    return authenticate


def open_auth(request: HTTPConnection, token: str | None) -> Principal:
    """Everyone is an admin: only for ``--no-auth`` on a loopback address."""
    return Principal("anonymous", None)


class RateLimit:
    """Per-caller request limits (``limits`` moving windows); over the limit is a 429.

    Counted in ``storage_url``: this process's memory, or a Redis every server process shares
    (then ``name`` keeps these counts apart from the others kept there). A storage that cannot
    be reached lets requests through, logged once a minute: the store, not the limiter, is
    what must stay up."""

    def __init__(self, rates: str, storage_url: str = "memory://", name: str = "api") -> None:
        self._rates = parse_many(rates)
        memory = storage_url.startswith("memory:")
        storage = MemoryStorage() if memory else storage_from_string(storage_url)
        self._limiter = MovingWindowRateLimiter(storage)
        errors = storage.base_exceptions
        self._unreachable: tuple[type[Exception], ...] = (
            () if memory else errors if isinstance(errors, tuple) else (errors,)
        )
        self._name = f"jobtrail-{name}"
        self._warned_at = 0.0

    def check(self, key: str) -> None:
        """Count a request of ``key``; raise a 429 with ``Retry-After`` when over a limit."""
        for rate in self._rates:
            if not self._counted(self._limiter.hit, rate, key):
                raise self._throttled(rate, key)

    def refuse_if_spent(self, key: str) -> None:
        """Raise the 429 of ``check`` if ``key`` has no request left, without counting one."""
        for rate in self._rates:
            if not self._counted(self._limiter.test, rate, key):
                raise self._throttled(rate, key)

    def _counted(self, ask: Callable[..., bool], rate: RateLimitItem, key: str) -> bool:
        """``ask(rate, key)``, or True (let it through) while the storage is unreachable."""
        try:
            return ask(rate, self._name, key)
        except self._unreachable as exc:
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("rate limits not applied: storage unreachable", error=str(exc))
            return True

    def _throttled(self, rate: RateLimitItem, key: str) -> HTTPException:
        try:
            reset, _remaining = self._limiter.get_window_stats(rate, self._name, key)
        except self._unreachable:
            reset = time.time() + rate.get_expiry()
        retry = max(int(reset - time.time()) + 1, 1)
        return HTTPException(
            429,
            f"rate limit of {rate} exceeded; retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )


def client_address(conn: HTTPConnection) -> str:
    """The address a request came from (the proxy's, unless uvicorn trusts its headers)."""
    return conn.client.host if conn.client is not None else "unknown"


class AuthFailures:
    """Failed sign-ins and unknown tokens per client address: past ``rates`` the address gets
    429 for any token until the window moves on, so tokens cannot be guessed at speed."""

    def __init__(self, rates: str, storage_url: str = "memory://") -> None:
        self._limit = RateLimit(rates, storage_url, name="auth-failures")

    def refuse_if_blocked(self, conn: HTTPConnection) -> None:
        """Raise a 429 if the address of ``conn`` has spent its failures."""
        self._limit.refuse_if_spent(client_address(conn))

    def count(self, conn: HTTPConnection) -> None:
        """Count one failure of the address of ``conn`` (a 429 once over the limit)."""
        self._limit.check(client_address(conn))


COOKIE = "jobtrail_token"
"""The dashboard keeps the token in this http-only cookie; the API accepts it too."""

_bearer = HTTPBearer(auto_error=False, description="A token from `jobtrail tokens create`.")


@dataclass(frozen=True)
class Admission:
    """An admitted caller, the token it came with (to check again later) and the key its
    requests and streams are counted under."""

    caller: Principal
    token: str | None
    key: str


class Gate:
    """Authentication then rate limiting, as configured for one API router; cookie-borne
    requests that change something must come from an allowed origin."""

    def __init__(
        self,
        authenticate: Authenticate,
        limit: RateLimit,
        *,
        failures: AuthFailures | None = None,
        origins: Origins | None = None,
    ) -> None:
        self.authenticate = authenticate
        self.limit = limit
        self.failures = failures or AuthFailures("30/minute")
        self.origins = origins or Origins()

    def admit(self, request: HTTPConnection, token: str | None) -> Admission:
        """The caller of ``request``, counted against its rate limit; a token that fails
        counts against the address's failures."""
        if token is not None:
            self.failures.refuse_if_blocked(request)
        try:
            caller = self.authenticate(request, token)
        except HTTPException as exc:
            if exc.status_code == 401 and token is not None:
                self.failures.count(request)
            raise
        key = caller.name
        if caller.name == "anonymous":
            key = client_address(request)
        self.limit.check(key)
        return Admission(caller, token, key)

    def still_admitted(self, request: HTTPConnection, admission: Admission) -> bool:
        """Whether the token ``admission`` came with is still accepted (not revoked)."""
        try:
            self.authenticate(request, admission.token)
        except HTTPException:
            return False
        return True

    def admission(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Admission:
        """The caller from the bearer token or else the dashboard's cookie, admitted through
        this gate (a cookie-borne change must come from an allowed origin)."""
        if credentials:
            return self.admit(request, credentials.credentials)
        token = request.cookies.get(COOKIE)
        if token is not None and request.method not in SAFE_METHODS:
            self.origins.check(request)
        return self.admit(request, token)

    def caller(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        """The dependency of this router's endpoints: the caller, admitted as by
        ``admission``."""
        return self.admission(request, credentials).caller


def visible(tracker: Tracker, job_id: str, caller: Principal) -> Job:
    """The job if ``caller`` may see it; otherwise ``JobNotFound``, exactly as if it did not
    exist."""
    job = tracker.get(job_id)
    if not caller.can_see(job):
        raise JobNotFound(job_id)
    return job
