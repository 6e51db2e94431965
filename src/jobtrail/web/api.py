"""The REST API router (``/api/v1``): one gate for its callers, and the job, service, stream
and metrics endpoints behind it."""

from __future__ import annotations

from fastapi import APIRouter

from jobtrail.tracker import Tracker
from jobtrail.web.alert_endpoints import add_alert_routes
from jobtrail.web.auth import Authenticate, AuthFailures, Gate, RateLimit, token_auth
from jobtrail.web.bulk_endpoints import add_bulk_routes
from jobtrail.web.errors import JobtrailRoute
from jobtrail.web.item_endpoints import add_item_routes
from jobtrail.web.job_endpoints import add_job_routes
from jobtrail.web.metrics import add_metrics_route
from jobtrail.web.open_streams import OpenStreams
from jobtrail.web.origins import Origins
from jobtrail.web.schemas import ERRORS
from jobtrail.web.service_endpoints import add_health_route, add_service_routes
from jobtrail.web.streams import add_stream_routes
from jobtrail.web.webhook_endpoints import add_webhook_routes
from jobtrail.web.worker_endpoints import add_worker_routes


def create_router(
    tracker: Tracker,
    *,
    auth: Authenticate | None = None,
    rate_limit: str | None = None,
    auth_failures: AuthFailures | None = None,
) -> APIRouter:
    """The REST API for ``tracker``, to mount under ``/api/v1`` in any FastAPI app.

    ``auth(request, bearer_token)`` returns the caller's ``Principal`` or raises a 401
    ``HTTPException`` (default: tokens from ``jobtrail tokens create``), so a host app can
    plug in its own users. ``/health`` needs no token; ``/metrics`` needs an admin's unless
    the ``metrics_public`` setting is on. ``auth_failures`` counts failed authentications per
    client address (default: a counter of this router's own, at ``auth_rate_limit``).
    """
    settings = tracker.settings
    gate = Gate(
        auth or token_auth(tracker),
        RateLimit(rate_limit or settings.rate_limit, settings.ratelimit_storage_url),
        failures=auth_failures
        or AuthFailures(settings.auth_rate_limit, settings.ratelimit_storage_url),
        origins=Origins(settings.allowed_origins),
    )
    streams = OpenStreams(settings.max_streams_per_caller)
    protected = APIRouter(responses=ERRORS, route_class=JobtrailRoute)
    add_bulk_routes(protected, tracker, gate)
    add_job_routes(protected, tracker, gate)
    add_item_routes(protected, tracker, gate)
    add_service_routes(protected, tracker, gate)
    add_worker_routes(protected, tracker, gate)
    add_alert_routes(protected, tracker, gate)
    add_webhook_routes(protected, tracker, gate)
    add_stream_routes(protected, tracker, gate, streams)
    add_metrics_route(protected, tracker, gate, streams)
    public = APIRouter(route_class=JobtrailRoute)
    add_health_route(public, tracker)
    router = APIRouter()
    # FastAPI tries routes in order, and each try costs: the busiest (health checks, status
    # reads) come first.
    router.include_router(public)
    router.include_router(protected)
    return router
