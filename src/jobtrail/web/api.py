"""The REST API router (``/api/v1``): one gate for its callers, and the job, service, stream
and metrics endpoints behind it."""

from __future__ import annotations

from fastapi import APIRouter

from jobtrail.tracker import Tracker
from jobtrail.web.auth import Authenticate, Gate, RateLimit, token_auth
from jobtrail.web.errors import JobtrailRoute
from jobtrail.web.job_endpoints import add_job_routes
from jobtrail.web.metrics import add_metrics_route
from jobtrail.web.schemas import ERRORS
from jobtrail.web.service_endpoints import add_health_route, add_service_routes
from jobtrail.web.streams import add_stream_routes


def create_router(
    tracker: Tracker,
    *,
    auth: Authenticate | None = None,
    rate_limit: str | None = None,
) -> APIRouter:
    """The REST API for ``tracker``, to mount under ``/api/v1`` in any FastAPI app.

    ``auth(request, bearer_token)`` returns the caller's ``Principal`` or raises a 401
    ``HTTPException`` (default: tokens from ``jobtrail tokens create``), so a host app can
    plug in its own users. ``/health`` and ``/metrics`` need no token.
    """
    gate = Gate(auth or token_auth(tracker), RateLimit(rate_limit or tracker.settings.rate_limit))
    protected = APIRouter(responses=ERRORS, route_class=JobtrailRoute)
    add_job_routes(protected, tracker, gate)
    add_service_routes(protected, tracker, gate)
    add_stream_routes(protected, tracker, gate)
    public = APIRouter(route_class=JobtrailRoute)
    add_health_route(public, tracker)
    add_metrics_route(public, tracker)
    router = APIRouter()
    router.include_router(protected)
    router.include_router(public)
    return router
