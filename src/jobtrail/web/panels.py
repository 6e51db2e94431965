"""The dashboard's live panels: the figures each page shows and refreshes as the stream says
jobs changed — the overview's tiles, the queues, the throughput charts, a search's total."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from jobtrail.jobs import Job, Page, QueueInfo, Stats
from jobtrail.states import Status
from jobtrail.tracker import Tracker
from jobtrail.web.auth import Principal
from jobtrail.web.charts import bar_chart, line_chart
from jobtrail.web.schemas import label_filters

STATUSES = [s.value for s in Status]
PAGE_SIZE = 50
"""Jobs on a page of the history."""


@dataclass(frozen=True)
class Window:
    """A stats window and the bucket it is drawn in."""

    name: str
    label: str
    span: timedelta
    bucket: timedelta

    @property
    def days(self) -> int:
        """The whole days of statistics this window needs (at least one)."""
        return max(self.span // timedelta(days=1), 1)

    @property
    def bucket_name(self) -> str:
        minutes = int(self.bucket.total_seconds() // 60)
        if minutes < 60:
            return "minute" if minutes == 1 else f"{minutes} minutes"
        return "hour" if minutes == 60 else "day"


WINDOWS = {
    w.name: w
    for w in (
        Window("1h", "last hour", timedelta(hours=1), timedelta(minutes=1)),
        Window("6h", "last 6 hours", timedelta(hours=6), timedelta(minutes=5)),
        Window("24h", "last 24 hours", timedelta(hours=24), timedelta(hours=1)),
        Window("48h", "last 48 hours", timedelta(hours=48), timedelta(hours=1)),
        Window("7d", "last 7 days", timedelta(days=7), timedelta(days=1)),
        Window("14d", "last 14 days", timedelta(days=14), timedelta(days=1)),
        Window("30d", "last 30 days", timedelta(days=30), timedelta(days=1)),
        Window("90d", "last 90 days", timedelta(days=90), timedelta(days=1)),
    )
}
"""Short windows are drawn by the minute or hour (per-minute summaries, kept 48 hours); longer
ones by the day of creation (per-day summaries)."""


@dataclass(frozen=True)
class Tiles:
    """The overview's counts: jobs queued, waiting and running now; finished today (UTC)."""

    counts: dict[str, int]
    success_today: str
    queues: list[QueueInfo] = field(default_factory=list)


def tiles(tracker: Tracker, owner: str | None) -> Tiles:
    """The overview's figures, read as the API would read them."""
    queues = tracker.ops.queues(owner=owner)
    today = tracker.stats(days=1, owner=owner)
    counts = {s: 0 for s in ("queued", "waiting", "running")}
    for queue in queues:
        counts["queued"] += queue.queued
        counts["waiting"] += queue.waiting
        counts["running"] += queue.running
    for status in ("succeeded", "partial", "failed", "cancelled"):
        counts[status] = today.jobs_by_status.get(status, 0)
    return Tiles(counts, _percent(today.success_rate, "%.0f%%"), queues)


def failures(tracker: Tracker, owner: str | None) -> list[Job]:
    """The overview's most recent failed and partial jobs."""
    return list(tracker.list(owner=owner, status=["failed", "partial"], limit=8).jobs)


@dataclass(frozen=True)
class Charts:
    """The stats page's figures for one window."""

    window: Window
    stats: Stats
    throughput: str
    failures: str
    success: str


def charts(tracker: Tracker, window: Window, owner: str | None) -> Charts:
    """Finished jobs, failures and the success rate per bucket of ``window``, drawn as SVG."""
    series = _series(tracker, window, owner)
    rates: dict[str, float | None] = {}
    failed: dict[str, dict[str, int]] = {}
    for label, counts in series.items():
        done = sum(counts.get(s, 0) for s in ("succeeded", "partial", "failed"))
        failed[label] = {s: counts.get(s, 0) for s in ("partial", "failed")}
        rates[label] = 100.0 * counts.get("succeeded", 0) / done if done else None
    what = "finished" if window.bucket < timedelta(days=1) else "created"
    title = f"Jobs {what} per {window.bucket_name} by status"
    return Charts(
        window,
        tracker.stats(days=window.days, owner=owner),
        bar_chart(series, STATUSES, title),
        bar_chart(failed, ["partial", "failed"], f"Failures per {window.bucket_name}"),
        line_chart(rates, "% succeeded"),
    )


def _series(tracker: Tracker, window: Window, owner: str | None) -> dict[str, dict[str, int]]:
    """Counts per bucket label, every bucket of the window present (empty ones too)."""
    now = tracker.now()
    if window.bucket >= timedelta(days=1):
        counted = tracker.ops.timeline(window.days, owner=owner)
        today = now.date()
        days = [(today - timedelta(days=n)).isoformat() for n in range(window.days - 1, -1, -1)]
        return {day[5:]: counted.get(day, {}) for day in days}
    step = int(window.bucket.total_seconds())
    first = int((now - window.span).timestamp()) // step * step + step
    found = tracker.ops.finished(datetime.fromtimestamp(first, UTC), window.bucket, owner)
    starts = [datetime.fromtimestamp(t, UTC) for t in range(first, int(now.timestamp()) + 1, step)]
    return {start.strftime("%H:%M"): found.get(start, {}) for start in starts}


def _percent(rate: float | None, template: str) -> str:
    return "–" if rate is None else template % (rate * 100)


SEARCH_WORDS = re.compile(r'(\w+):("[^"]*"|\S+)')
"""``name:value`` words of a search (a value may be quoted)."""
SEARCH_NAMES = ("kind", "owner", "status", "label", "trigger", "id", "key")


def search_filters(text: str) -> tuple[dict[str, Any], str]:
    """Filters named in a search (``kind:sync owner:A status:failed label:env:prod id:3f2a``)
    and the words left, which search ids, keys and messages."""
    found: dict[str, Any] = {}

    def take(match: re.Match[str]) -> str:
        name, value = match.group(1).lower(), match.group(2).strip('"')
        if name not in SEARCH_NAMES:
            return match.group(0)
        if name in ("status", "label"):
            found.setdefault(name, []).append(value)
        else:
            found[name] = value
        return ""

    rest = " ".join(SEARCH_WORDS.sub(take, text).split())
    for name in ("id", "key"):
        if name in found:
            rest = " ".join(filter(None, [found.pop(name), rest]))
    return found, rest


def add_search(filters: dict[str, Any], search: str) -> None:
    """Fold a search's named filters into a history page's ``filters`` (those set by the
    form win), and keep its other words as ``q``."""
    named, words = search_filters(search)
    statuses = [*filters["status"], *named.get("status", [])]
    filters["status"] = [s for s in dict.fromkeys(statuses) if s in STATUSES]
    filters["label"] = [*filters["label"], *(t for t in named.get("label", []) if ":" in t)]
    for name in ("kind", "owner", "trigger"):
        filters[name] = filters[name] or named.get(name)
    filters["q"] = words or None
    filters["search"] = search


def listing(
    tracker: Tracker, caller: Principal, filters: Mapping[str, Any], offset: int, order: str
) -> Page:
    """A history page's jobs: those matching ``filters`` that ``caller`` may see (none at all
    for a filter on another owner, as ``GET /jobs`` answers)."""
    owner = filters.get("owner")
    if not caller.may_filter(owner):
        return Page(jobs=[], total_count=0, limit=PAGE_SIZE, offset=offset)
    return tracker.list(
        owner=caller.scope(owner),
        status=filters.get("status") or None,
        kind=filters.get("kind"),
        trigger=filters.get("trigger"),
        created_from=filters.get("created_from"),
        created_to=filters.get("created_to"),
        q=filters.get("q"),
        labels=label_filters(filters.get("label")),
        limit=PAGE_SIZE,
        offset=offset,
        order=order,
    )


def bulk_filter(filters: Mapping[str, Any]) -> dict[str, Any]:
    """A history page's filters as ``POST /jobs/bulk`` takes them (``filter``): the owner's
    too, which the endpoint limits to what the caller may touch."""
    body: dict[str, Any] = {
        "status": list(filters.get("status") or []),
        "label": list(filters.get("label") or []),
    }
    for name in ("kind", "trigger", "q", "owner"):
        if filters.get(name):
            body[name] = filters[name]
    for name in ("created_from", "created_to"):
        moment = filters.get(name)
        if isinstance(moment, datetime):
            body[name] = moment.isoformat()
    return body
