"""The dashboard's Alerts page: alerts firing now, the recent ones and the rules, each alert
linking to its jobs — for admins (alerts span every owner), channels as labels only."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

if TYPE_CHECKING:
    from jobtrail.web.dashboard import Dashboard

Guard = Callable[..., Response]

RECENT = 50
"""Alerts the page lists (newest first)."""


def alerts_page(board: Dashboard, request: Request) -> Response:
    """The page: firing alerts, the recent ones, the rules with how many of theirs fire."""
    caller = board.caller(request)
    if not caller.admin:
        return board.render(request, "alerts.html", caller, firing=[], recent=[], rules=[])
    alerts = board.tracker.alerts
    firing = alerts.page(status="firing", limit=RECENT).alerts
    rule = request.query_params.get("rule") or None
    if rule is not None and (len(rule) > 200 or "\x00" in rule):
        rule = None  # no rule has such a name: show them all
    recent = alerts.page(rule=rule, limit=RECENT).alerts
    rules = alerts.rules()
    counts = {rule.name: sum(1 for a in firing if a.rule == rule.name) for rule in rules}
    return board.render(
        request, "alerts.html", caller, firing=firing, recent=recent, rules=rules, counts=counts
    )


def add_alert_page(router: APIRouter, board: Dashboard, guard: Guard) -> None:
    """Add ``/alerts`` to the dashboard's ``router``, its page behind ``guard`` (the login)."""

    @router.get("/alerts", response_class=HTMLResponse)
    def alerts(request: Request) -> Response:
        return guard(lambda r: alerts_page(board, r), request)
