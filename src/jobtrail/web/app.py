"""The standalone service: the API (and its embedded worker) as one FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from anyio import to_thread
from fastapi import FastAPI

from jobtrail.tracker import Tracker
from jobtrail.web.access_log import mask_tokens_in_logs
from jobtrail.web.api import create_router
from jobtrail.web.auth import AuthFailures, open_auth
from jobtrail.web.dashboard import create_dashboard, static_files
from jobtrail.web.errors import BodyLimit, install_error_handlers
from jobtrail.web.methods import MethodGate

DESCRIPTION = """What every background job is doing: submit jobs, report progress of work that
runs elsewhere, follow jobs live (Server-Sent Events), cancel, retry, and read statistics.
Every endpoint but `/health` needs a bearer token (`jobtrail tokens create`), `/metrics` an
admin's; an owner token sees only its owner's jobs (others answer 404, exactly like absent
ones)."""


def create_app(
    tracker: Tracker,
    *,
    no_auth: bool = False,
    run_worker: bool = True,
    concurrency: int | None = None,
    dashboard: bool = True,
    maintain: bool = True,
) -> FastAPI:
    """The API under ``/api/v1`` and the dashboard at ``/``; with ``run_worker`` a worker runs
    in the app's lifespan and drains gracefully on shutdown. Without registered kinds, or
    without ``run_worker``, it runs no jobs and consumes no queue: only the maintenance
    (rescue, the queue watch that shows jobs ``waiting``, expiry, purges). Without
    ``maintain`` it runs no worker at all: another process does (``serve --workers N``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mask_tokens_in_logs()  # now: the server has configured its loggers by the time it starts
        if not maintain:
            yield
            return
        worker = tracker.worker(concurrency, consume=run_worker)
        worker.start()
        try:
            yield
        finally:
            await to_thread.run_sync(worker.stop)

    app = FastAPI(
        title="jobtrail",
        version=version("jobtrail"),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=tracker.settings.max_body_bytes)
    app.add_middleware(MethodGate, document=app.openapi)
    install_error_handlers(app)
    failures = AuthFailures(
        tracker.settings.auth_rate_limit, tracker.settings.ratelimit_storage_url
    )
    router = create_router(tracker, auth=open_auth if no_auth else None, auth_failures=failures)
    app.include_router(router, prefix="/api/v1")
    if dashboard:
        app.mount("/static", static_files(), name="static")
        app.include_router(create_dashboard(tracker, no_auth=no_auth, auth_failures=failures))
    return app
