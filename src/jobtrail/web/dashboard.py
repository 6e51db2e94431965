"""The dashboard: server-rendered pages (Jinja2) kept live by a little JavaScript over SSE."""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from anyio import to_thread
from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import StringConstraints

from jobtrail.exceptions import InvalidData, JobNotFound, TooManyFilters
from jobtrail.states import ACTIVE, RETRYABLE, TERMINAL, Status
from jobtrail.tracker import Tracker
from jobtrail.web import panels
from jobtrail.web.alert_pages import add_alert_page
from jobtrail.web.auth import (
    COOKIE,
    AuthFailures,
    Principal,
    open_auth,
    token_auth,
    visible,
)
from jobtrail.web.origins import Origins
from jobtrail.web.schemas import JobId, utc_time

HERE = FilePath(__file__).parent
ITEMS_PAGE = 100
"""Failed items on a job page; the rest are a "next" link away."""
LabelOrNothing = Annotated[str, StringConstraints(pattern=r"^([^:\x00]{1,100}:[^\x00]{0,200})?$")]
"""A history page's label filter: ``KEY:VALUE``, or empty for none."""
WINDOW_PATTERN = "^(" + "|".join(panels.WINDOWS) + ")$"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
"""Sent with every dashboard response: its own scripts and styles only, never in a frame."""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class NeedsLogin(Exception):
    """No valid token cookie: the page redirects to the login form."""


class DashboardRoute(APIRoute):
    """A dashboard route: every response carries ``PAGE_HEADERS``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            response = await handler(request)
            response.headers.update(PAGE_HEADERS)
            return response

        return handle


class Dashboard:
    """The pages, bound to one tracker."""

    def __init__(
        self, tracker: Tracker, no_auth: bool, failures: AuthFailures, origins: Origins
    ) -> None:
        self.tracker = tracker
        self.no_auth = no_auth
        self.failures = failures
        self.origins = origins
        self.authenticate = open_auth if no_auth else token_auth(tracker)
        self.templates = Jinja2Templates(directory=HERE / "templates")
        env = self.templates.env
        env.filters["duration"] = _duration
        env.filters["when"] = _when
        env.globals["active_statuses"] = [s.value for s in ACTIVE]

    def caller(self, request: Request) -> Principal:
        """The signed-in caller (or the anonymous admin of ``--no-auth``)."""
        token = request.cookies.get(COOKIE)
        try:
            if token is not None:
                self.failures.refuse_if_blocked(request)
            return self.authenticate(request, token)
        except HTTPException as exc:
            if exc.status_code == 401 and token is not None:
                with suppress(HTTPException):  # counted; past the limit, every page says so
                    self.failures.count(request)
            raise NeedsLogin from exc

    def render(self, request: Request, name: str, caller: Principal, **context: Any) -> Response:
        root = _root(request)
        here = request.url.path.removeprefix(root) or "/"
        context |= {"caller": caller, "no_auth": self.no_auth, "root": root, "here": here}
        return self.templates.TemplateResponse(request, name, context)

    # -- pages --------------------------------------------------------------------------

    def overview(self, request: Request) -> Response:
        caller = self.caller(request)
        owner = caller.owner
        active = self.tracker.active(owner=owner, limit=100)
        return self.render(
            request,
            "overview.html",
            caller,
            active=active,
            failures=panels.failures(self.tracker, owner),
            tiles=panels.tiles(self.tracker, owner),
        )

    def queues(self, request: Request) -> Response:
        caller = self.caller(request)
        return self.render(
            request, "queues.html", caller, queues=self.tracker.ops.queues(owner=caller.owner)
        )

    def live(self, request: Request, panel: str, window: str) -> Response:
        """One panel of a page, rendered afresh (the page swaps it in when the stream says
        jobs changed)."""
        caller = self.caller(request)
        owner = caller.owner
        context: dict[str, Any] = {"panel": panel}
        if panel == "tiles":
            context["tiles"] = panels.tiles(self.tracker, owner)
        elif panel == "queues":
            context["queues"] = self.tracker.ops.queues(owner=owner)
        elif panel == "failures":
            context["failures"] = panels.failures(self.tracker, owner)
        elif panel == "workers":
            context["workers"] = self.tracker.workers() if caller.admin else []
        else:
            context["charts"] = panels.charts(self.tracker, panels.WINDOWS[window], owner)
        return self.render(request, "_live.html", caller, **context)

    def history(self, request: Request, filters: dict[str, Any], page: int, order: str) -> Response:
        caller = self.caller(request)
        limit = panels.PAGE_SIZE
        listing = panels.listing(self.tracker, caller, filters, (page - 1) * limit, order)
        pages = max(math.ceil(listing.total_count / limit), 1)
        query = {k: v for k, v in request.query_params.multi_items() if k != "page"}

        def link(n: int) -> str:
            return "?" + urlencode([*query.items(), ("page", str(n))])

        return self.render(
            request,
            "history.html",
            caller,
            listing=listing,
            page=page,
            pages=pages,
            link=link,
            filters=filters,
            order=order,
            statuses=panels.STATUSES,
            bulk_filter=panels.bulk_filter(filters),
        )

    def job(self, request: Request, job_id: str, items_after: int) -> Response:
        caller = self.caller(request)
        job = visible(self.tracker, job_id, caller)
        item_page = self.tracker.failed_item_page(job_id, after=items_after, limit=ITEMS_PAGE)
        return self.render(
            request,
            "job.html",
            caller,
            job=job,
            payload=self.tracker.redactor.json(job.payload),
            events=self.tracker.events(job_id, limit=500),
            deliveries=self.tracker.webhooks.job_deliveries(job_id, caller.owner),
            item_page=item_page,
            items_after=items_after,
            # Unlisted failed items would count as succeeded in a retry of only the listed ones.
            all_listed=item_page.total >= (job.items_failed or 0),
            cancellable=job.status in ACTIVE,
            retryable=job.status in RETRYABLE,
            terminal=job.status in TERMINAL,
        )

    def stats(self, request: Request, window: str) -> Response:
        caller = self.caller(request)
        owner = caller.owner
        chosen = panels.WINDOWS[window]
        stats = self.tracker.stats(days=chosen.days, owner=owner)
        kinds = sorted(stats.jobs_by_kind, key=lambda k: -stats.jobs_by_kind[k])[:12]
        per_kind = {k: self.tracker.stats(days=chosen.days, owner=owner, kind=k) for k in kinds}
        return self.render(
            request,
            "stats.html",
            caller,
            windows=panels.WINDOWS,
            charts=panels.charts(self.tracker, chosen, owner),
            per_kind=per_kind,
        )

    def schedules(self, request: Request) -> Response:
        caller = self.caller(request)
        schedules = self.tracker.ops.list_schedules(owner=caller.owner, recent=10)
        return self.render(request, "schedules.html", caller, schedules=schedules)

    def workers(self, request: Request) -> Response:
        """The live workers; they name hosts and every owner's kinds: admins only."""
        caller = self.caller(request)
        workers = self.tracker.workers() if caller.admin else []
        return self.render(request, "workers.html", caller, workers=workers)

    def login_form(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        return self.templates.TemplateResponse(
            request, "login.html", {"error": error, "root": _root(request)}, status_code=status
        )

    async def login(self, request: Request) -> Response:
        """Sign in with a token from the form: only from a page of this server (a forged
        form would switch the victim to the forger's token), and a bounded number of wrong
        tokens per address."""
        refusal = self.origins.refusal(request)
        if refusal is not None:
            return self.login_form(request, "Sign-in from another site was refused.", 403)
        try:
            self.failures.refuse_if_blocked(request)
        except HTTPException as exc:
            headers = exc.headers or {}
            response = self.login_form(request, "Too many attempts; try again later.", 429)
            response.headers.update(headers)
            return response
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        secret = (form.get("token") or [""])[0].strip()
        if not secret or await to_thread.run_sync(self.tracker.ops.find_token, secret) is None:
            with suppress(HTTPException):  # this failure is counted; the next one answers 429
                self.failures.count(request)
            return self.login_form(request, "That token is not valid.", 401)
        response = RedirectResponse(f"{_root(request)}/", status_code=303)
        response.set_cookie(
            COOKIE,
            secret,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            max_age=int(timedelta(days=7).total_seconds()),
        )
        return response


def create_dashboard(
    tracker: Tracker, *, no_auth: bool = False, auth_failures: AuthFailures | None = None
) -> APIRouter:
    """The dashboard's pages (mount at ``/``); they call the API under ``/api/v1``.
    ``auth_failures`` counts wrong tokens at sign-in (share the API's to count both)."""
    settings = tracker.settings
    failures = auth_failures or AuthFailures(
        settings.auth_rate_limit, settings.ratelimit_storage_url
    )
    board = Dashboard(tracker, no_auth, failures, Origins(settings.allowed_origins))
    router = APIRouter(include_in_schema=False, route_class=DashboardRoute)

    _add_pages(router, board)

    @router.get("/login")
    def login_form(request: Request) -> Response:
        return board.login_form(request)

    @router.post("/login")
    async def login(request: Request) -> Response:
        return await board.login(request)

    @router.post("/logout")
    def logout(request: Request) -> Response:
        """Sign out (a POST from a page of this server: a link could be forged)."""
        board.origins.check(request)
        response = RedirectResponse(f"{_root(request)}/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    return router


def _add_pages(router: APIRouter, board: Dashboard) -> None:
    """The pages behind the sign-in, and the live panels they refresh."""

    @router.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> Response:
        return _guard(board.overview, request)

    @router.get("/queues", response_class=HTMLResponse)
    def queues(request: Request) -> Response:
        return _guard(board.queues, request)

    @router.get("/live/{panel}", response_class=HTMLResponse)
    def live(
        request: Request,
        panel: Annotated[str, Path(pattern="^(tiles|queues|charts|workers|failures)$")],
        window: Annotated[str, Query(pattern=WINDOW_PATTERN)] = "1h",
    ) -> Response:
        return _guard(board.live, request, panel, window)

    @router.get("/jobs", response_class=HTMLResponse)
    def history(
        request: Request,
        status: Annotated[list[Status] | None, Query()] = None,
        kind: Annotated[str | None, Query(max_length=200)] = None,
        owner: Annotated[str | None, Query(max_length=200)] = None,
        trigger: Annotated[str | None, Query(max_length=50)] = None,
        created_from: Annotated[str | None, Query(max_length=40)] = None,
        created_to: Annotated[str | None, Query(max_length=40)] = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        label: Annotated[list[LabelOrNothing] | None, Query()] = None,
        order: Annotated[str, Query(pattern="^(created|duration)$")] = "created",
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    ) -> Response:
        filters = {
            "status": [s.value for s in status or ()],
            "kind": kind or None,
            "owner": owner or None,
            "trigger": trigger or None,
            "created_from": utc_time(created_from),
            "created_to": utc_time(created_to),
            "label": [text for text in label or () if text],
            "raw_from": created_from or "",
            "raw_to": created_to or "",
        }
        panels.add_search(filters, q or "")
        return _guard(board.history, request, filters, page, order)

    @router.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job(
        request: Request,
        job_id: JobId,
        items_after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> Response:
        return _guard(board.job, request, job_id, items_after)

    @router.get("/stats", response_class=HTMLResponse)
    def stats(
        request: Request, window: Annotated[str, Query(pattern=WINDOW_PATTERN)] = "1h"
    ) -> Response:
        return _guard(board.stats, request, window)

    @router.get("/schedules", response_class=HTMLResponse)
    def schedules(request: Request) -> Response:
        return _guard(board.schedules, request)

    @router.get("/workers", response_class=HTMLResponse)
    def workers(request: Request) -> Response:
        return _guard(board.workers, request)

    add_alert_page(router, board, _guard)


def _guard(page: Callable[..., Response], request: Request, *args: Any) -> Response:
    """The page, or the way to the login form, or an HTML error page: 404 for a job not found
    or not visible to the caller, 422 for filters the store refuses (too many; a NUL)."""
    try:
        response = page(request, *args)
    except NeedsLogin:
        return RedirectResponse(f"{_root(request)}/login", status_code=303)
    except (JobNotFound, TooManyFilters, InvalidData) as exc:
        status = 404 if isinstance(exc, JobNotFound) else 422
        body = f"<!doctype html><title>{status}</title><p>{escape(str(exc))}. "
        link = f'<a href="{escape(_root(request))}/jobs">History</a>'
        return HTMLResponse(body + link, status_code=status)
    return response


def _root(request: Request) -> str:
    """Where the dashboard is mounted (``""`` at ``/``; ``"/jobtrail"`` inside another app)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def static_files() -> StaticFiles:
    """The dashboard's CSS and JavaScript (all local, no CDN)."""
    return StaticFiles(directory=HERE / "static")
