"""What the command line reads and prints: jobs from the store or a server, and their views."""

from __future__ import annotations

import getpass
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar
from urllib.parse import quote

import pydantic_core
from pydantic import TypeAdapter
from rich import box
from rich import json as rich_json
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from jobtrail.exceptions import JobNotFound, JobTimeout, JobtrailError
from jobtrail.jobs import JSON, Event, EventType, FailedItem, Job, Page, Stats, Status

if TYPE_CHECKING:
    import httpx

    from jobtrail.tracker import Tracker

T = TypeVar("T")
COLOURS = {
    Status.QUEUED: "cyan",
    Status.WAITING: "blue",
    Status.RUNNING: "yellow",
    Status.SUCCEEDED: "green",
    Status.PARTIAL: "dark_orange",
    Status.FAILED: "red",
    Status.CANCELLED: "bright_black",
}
EVENTS_PAGE = 1000
PREFIX_SCAN = 1000
"""A short id is looked for among this many of the newest jobs."""
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConsoleError(JobtrailError):
    """The command line got no usable answer: server unreachable, token refused, and so on."""


@dataclass(frozen=True)
class Query:
    """A job listing's filters and page, named as ``Tracker.list`` and ``GET /jobs`` take them."""

    owner: str | None = None
    status: Sequence[Status] = ()
    kind: str | None = None
    priority: str | None = None
    trigger: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    q: str | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True)
class Submission:
    """A job to queue, named as ``Tracker.submit`` and ``POST /jobs`` take it."""

    kind: str
    payload: dict[str, JSON]
    owner: str | None = None
    key: str | None = None
    priority: str | None = None


@dataclass(frozen=True)
class ScheduleRunView:
    """One audited slot of a schedule."""

    slot_at: datetime
    outcome: str
    job_id: str | None
    worker: str | None
    at: datetime


@dataclass(frozen=True)
class ScheduleView:
    """A schedule with its next run and recent slots, as ``GET /schedules`` shows it."""

    name: str
    kind: str
    cron: str | None
    every_seconds: float | None
    owner: str | None
    last_slot_at: datetime | None
    next_run_at: datetime | None
    recent_runs: list[ScheduleRunView] = field(default_factory=list)


class Backend(Protocol):
    """Where jobs are read and changed: the store itself, or a jobtrail server."""

    def get(self, job_id: str) -> Job: ...
    def find(self, query: Query) -> Page: ...
    def events(self, job_id: str, after: int) -> list[Event]: ...
    def failed_items(self, job_id: str) -> list[FailedItem]: ...
    def cancel(self, job_id: str) -> Job: ...
    def retry(self, job_id: str, only_failed_items: bool) -> Job: ...
    def submit(self, order: Submission) -> Job: ...
    def stats(self, days: int, owner: str | None, kind: str | None) -> Stats: ...
    def schedules(self) -> list[ScheduleView]: ...


def cli_actor() -> str:
    """Who the audit trail names for changes made from this shell: ``cli:<OS user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in the environment or the password database
        return "cli:unknown"


class StoreBackend:
    """Jobs read and changed through a ``Tracker`` on the store; changes name ``actor``, and
    payloads are shown with their secrets masked, as the API shows them."""

    def __init__(self, tracker: Tracker, actor: str) -> None:
        self.tracker = tracker
        self.actor = actor

    def shown(self, job: Job) -> Job:
        return replace(job, payload=self.tracker.redactor.json(job.payload))

    def get(self, job_id: str) -> Job:
        return self.shown(self.tracker.get(job_id))

    def find(self, query: Query) -> Page:
        page = self.tracker.list(**asdict(query))
        return replace(page, jobs=[self.shown(job) for job in page.jobs])

    def events(self, job_id: str, after: int) -> list[Event]:
        return self.tracker.events(job_id, after=after, limit=EVENTS_PAGE)

    def failed_items(self, job_id: str) -> list[FailedItem]:
        return self.tracker.failed_items(job_id)

    def cancel(self, job_id: str) -> Job:
        return self.shown(self.tracker.cancel(job_id, actor=self.actor))

    def retry(self, job_id: str, only_failed_items: bool) -> Job:
        job = self.tracker.retry(job_id, only_failed_items=only_failed_items, actor=self.actor)
        return self.shown(job)

    def submit(self, order: Submission) -> Job:
        return self.shown(self.tracker.submit(**asdict(order), actor=self.actor))

    def stats(self, days: int, owner: str | None, kind: str | None) -> Stats:
        return self.tracker.stats(days=days, owner=owner, kind=kind)

    def schedules(self) -> list[ScheduleView]:
        store = self.tracker.store
        return [
            ScheduleView(
                **{name: getattr(s, name) for name in FIELDS_OF_SCHEDULE},
                recent_runs=[
                    ScheduleRunView(r.slot_at, r.outcome, r.job_id, r.worker, r.at)
                    for r in store.schedule_runs(s.name, 20)
                ],
            )
            for s in store.list_schedules()
        ]


FIELDS_OF_SCHEDULE = [name for name in ScheduleView.__dataclass_fields__ if name != "recent_runs"]


class HttpBackend:
    """Jobs read and changed through a server's ``/api/v1``; changes name the token."""

    def __init__(self, url: str, token: str | None, timeout: float = 10.0) -> None:
        try:
            import httpx
        except ImportError:
            raise ConsoleError("--url needs httpx: pip install httpx") from None
        base = url.rstrip("/")
        self.base = base if base.endswith("/api/v1") else f"{base}/api/v1"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            self.client = httpx.Client(base_url=self.base, headers=headers, timeout=timeout)
        except httpx.InvalidURL as exc:
            raise ConsoleError(f"--url {url!r} is not a URL: {exc}") from None

    def call(self, method: str, path: str, *, job_id: str | None = None, **options: Any) -> Any:
        """The JSON answer to one request; a job's 404 is ``JobNotFound``, others one line."""
        import httpx

        try:
            response = self.client.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise ConsoleError(f"cannot reach {self.base}: {exc}") from exc
        if not response.is_success:
            self.refuse(response, job_id)
        return response.json()

    def refuse(self, response: httpx.Response, job_id: str | None) -> NoReturn:
        if response.status_code == 404 and job_id is not None:
            raise JobNotFound(job_id)
        try:
            detail = response.json()["detail"]
        except (ValueError, KeyError, TypeError):
            detail = response.text[:200] or response.reason_phrase
        if isinstance(detail, list):  # a validation error: name the fields
            detail = "; ".join(
                f"{e.get('loc')}: {e.get('msg')}" for e in detail if isinstance(e, dict)
            )
        if response.status_code == 401:
            hint = "pass --token or set JOBTRAIL_TOKEN"
            raise ConsoleError(f"{self.base} refused the token ({detail}); {hint}")
        raise ConsoleError(f"{detail} (HTTP {response.status_code})")

    def job(self, job_id: str, method: str = "GET", suffix: str = "", **options: Any) -> Any:
        """The answer about one job (its record, events, cancel or retry)."""
        path = f"/jobs/{quote(job_id, safe='')}{suffix}"
        return self.call(method, path, job_id=job_id, **options)

    def get(self, job_id: str) -> Job:
        return parse(TypeAdapter(Job), self.job(job_id))

    def find(self, query: Query) -> Page:
        params: list[tuple[str, Any]] = []
        for name, value in asdict(query).items():
            values = value if isinstance(value, list | tuple) else [value]
            params += [(name, v.isoformat() if isinstance(v, datetime) else v) for v in values]
        wanted = [(name, value) for name, value in params if value is not None]
        return parse(TypeAdapter(Page), self.call("GET", "/jobs", params=wanted))

    def events(self, job_id: str, after: int) -> list[Event]:
        answer = self.job(job_id, suffix="/events", params={"after": after, "limit": EVENTS_PAGE})
        return parse(TypeAdapter(list[Event]), answer["events"])

    def failed_items(self, job_id: str) -> list[FailedItem]:
        # The API lists no failed items, but the history records each one as it fails.
        return [
            FailedItem(
                job_id,
                str(e.data.get("item_id")),
                str(e.data.get("error_type")),
                e.message or "",
                e.at,
            )
            for e in all_events(self, job_id)
            if e.type == EventType.ITEM_FAILED and isinstance(e.data, dict)
        ]

    def cancel(self, job_id: str) -> Job:
        return parse(TypeAdapter(Job), self.job(job_id, "POST", "/cancel"))

    def retry(self, job_id: str, only_failed_items: bool) -> Job:
        options = {"params": {"only_failed_items": str(only_failed_items).lower()}}
        return parse(TypeAdapter(Job), self.job(job_id, "POST", "/retry", **options))

    def submit(self, order: Submission) -> Job:
        body = {k: v for k, v in asdict(order).items() if v is not None} | {"trigger": "manual"}
        answer = self.call("POST", "/jobs", json=body)  # 202 {job_id, …}, or 200 the keyed job
        return self.get(answer.get("job_id") or answer["id"])

    def stats(self, days: int, owner: str | None, kind: str | None) -> Stats:
        params = {k: v for k, v in {"days": days, "owner": owner, "kind": kind}.items() if v}
        return parse(TypeAdapter(Stats), self.call("GET", "/stats", params=params))

    def schedules(self) -> list[ScheduleView]:
        return parse(TypeAdapter(list[ScheduleView]), self.call("GET", "/schedules"))


def parse(adapter: TypeAdapter[T], data: Any) -> T:
    """A server's answer as a record, or one line saying it is not one."""
    try:
        return adapter.validate_python(data)
    except ValueError as exc:
        raise ConsoleError(f"the server's answer is not what this jobtrail expects: {exc}") from exc


@contextmanager
def connect(
    url: str | None, token: str | None, tracker: Callable[[], Tracker]
) -> Iterator[Backend]:
    """A server's API when ``url`` is given, else the store of the tracker ``tracker()`` makes."""
    if url:
        remote = HttpBackend(url, token)
        with remote.client:
            yield remote
        return
    with tracker() as local:
        yield StoreBackend(local, cli_actor())


def resolve(backend: Backend, job_id: str) -> Job:
    """The job with this id, or the one recent job whose id starts with it."""
    try:
        return backend.get(job_id)
    except JobNotFound:
        if len(job_id) >= 32:
            raise
        recent = backend.find(Query(limit=PREFIX_SCAN)).jobs
    matches = [job for job in recent if job.id.startswith(job_id)]
    if len(matches) > 1:
        raise ConsoleError(f"{job_id!r} starts {len(matches)} job ids; give more of it")
    if not matches:
        raise JobNotFound(job_id)
    return matches[0]


def all_events(backend: Backend, job_id: str) -> list[Event]:
    """A job's whole history, oldest first, read a page at a time."""
    events: list[Event] = []
    while page := backend.events(job_id, events[-1].id if events else 0):
        events += page
        if len(page) < EVENTS_PAGE:
            break
    return events


def parse_moment(text: str) -> datetime:
    """An ISO time (local time if it has no zone) or an age before now: ``30m``, ``2h``, ``7d``."""
    age = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if age:
        return datetime.now(UTC) - timedelta(seconds=float(age[1]) * AGE_UNITS[age[2]])
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO time nor an age like 30m, 2h or 7d") from None


def to_json(value: Any) -> str:
    """Records (and lists or dicts of them) as indented JSON, times in ISO 8601."""
    return pydantic_core.to_json(value, indent=2).decode()


def job_json(job: Job, events: list[Event], failed: list[FailedItem]) -> str:
    """A job's record with its ``events`` and ``failed_items`` added, as JSON."""
    record = pydantic_core.to_jsonable_python(job)
    return to_json(record | {"events": events, "failed_items": failed})


# -- views ----------------------------------------------------------------------------------


def colour(word: str) -> str:
    """The colour of a status, or of the event that records it; none for other words."""
    return COLOURS[Status(word)] if word in Status.__members__.values() else ""


def plain(value: str | Text | None) -> Text:
    """A cell's text as it is: a job's words are never read as rich markup."""
    return value if isinstance(value, Text) else Text(value or "")


def when(moment: datetime | None, layout: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A time in the local zone."""
    return "" if moment is None else moment.astimezone().strftime(layout)


def span(seconds: float | None) -> str:
    """``4.2s``, ``3m 04s`` or ``2h 03m``."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def elapsed(job: Job) -> float | None:
    """The job's duration, or how long it has been running so far."""
    if job.duration_seconds is not None or job.started_at is None or job.terminal:
        return job.duration_seconds
    return (datetime.now(UTC) - job.started_at).total_seconds()


def items(job: Job) -> str:
    if job.items_total is None and job.items_done is None:
        return ""
    done = f"{job.items_done or 0}/{'?' if job.items_total is None else job.items_total}"
    return done + (f" ({job.items_failed} failed)" if job.items_failed else "")


def headline(job: Job) -> str:
    """How a job is doing in one line: its error once it ended badly, else its message."""
    return (job.error_message if job.terminal else None) or job.message or ""


def jobs_table(page: Page) -> Table:
    """A page of jobs, one row each, with where the page is in the listing; in a narrow
    terminal the message column gives way first."""
    first = page.offset + 1 if page.jobs else 0
    caption = f"{first}–{page.offset + len(page.jobs)} of {page.total_count} jobs"
    table = Table(
        box=box.SIMPLE_HEAD,
        caption=caption,
        caption_justify="left",
        pad_edge=False,
        collapse_padding=True,
    )
    for name in ("id", "kind", "owner", "status", "done", "items", "created", "took"):
        table.add_column(name, no_wrap=True, justify="right" if name == "done" else "left")
    table.add_column("message")  # wrappable, so it gives way first; its text stays one line
    for job in page.jobs:
        status = Text(job.status.value, style=COLOURS[job.status])
        created, duration = when(job.created_at, "%m-%d %H:%M:%S"), span(elapsed(job))
        style = "red" if job.status is Status.FAILED else ""
        message = Text(headline(job), style=style, no_wrap=True, overflow="ellipsis")
        progress = f"{job.progress:.0f}%"
        cells = [job.id[:8], job.kind, job.owner, status, progress, items(job), created, duration]
        table.add_row(*[plain(cell) for cell in cells], message)
    return table


def job_view(job: Job, events: list[Event], failed: list[FailedItem]) -> RenderableType:
    """One job: its record, history, failed items, error and result."""
    status = Text(job.status.value, style=COLOURS[job.status])
    if job.cancel_requested and not job.terminal:
        status.append(" (cancel requested)")
    facts: dict[str, str | Text] = {
        "id": job.id, "kind": job.kind, "status": status, "owner": job.owner or "",
        "trigger": job.trigger, "priority": job.priority.value, "queue": job.queue,
        "attempt": f"{job.attempt} of {job.max_attempts}", "progress": f"{job.progress:.0f}%",
        "items": items(job), "message": job.message or "", "created": when(job.created_at),
        "started": when(job.started_at), "completed": when(job.completed_at),
        "duration": span(elapsed(job)), "eta": span(job.eta_seconds), "worker": job.worker or "",
        "key": job.key or "", "schedule": job.schedule or "", "retry of": job.retry_of or "",
        "labels": to_json(job.labels) if job.labels else "",
        "payload": "" if job.payload is None else pydantic_core.to_json(job.payload).decode(),
    }  # fmt: skip
    grid = Table.grid(padding=(0, 2))
    for name, value in facts.items():
        if value:
            grid.add_row(Text(name, style="bold"), plain(value))
    history = [(when(e.at), Text(e.type, style=colour(e.type)), e.message, e.actor) for e in events]
    parts: list[RenderableType] = [grid, Text("\nEvents", style="bold")]
    parts.append(table(["at", "event", "message", "actor"], history))
    if failed:
        rows = [(f.item_id, f.error_type, f.message) for f in failed]
        parts += [Text(f"Failed items ({len(failed)})", style="bold")]
        parts += [table(["item", "error", "message"], rows)]
    if job.error_message:
        parts += [Text("Error", style="bold red"), Text(job.error_message, style="red")]
    if isinstance(job.error_details, dict) and job.error_details.get("traceback"):
        parts.append(Text(str(job.error_details["traceback"]).rstrip(), style="bright_black"))
    if job.result is not None:
        result = rich_json.JSON(pydantic_core.to_json(job.result).decode())
        parts += [Text("Result", style="bold"), result]
    return Group(*parts)


def table(columns: Sequence[str], rows: Sequence[Sequence[str | Text | None]]) -> Table:
    """A plain table whose long cells wrap."""
    view = Table(box=box.SIMPLE_HEAD)
    for name in columns:
        view.add_column(name, overflow="fold")
    for row in rows:
        view.add_row(*map(plain, row))
    return view


def stats_view(stats: Stats) -> RenderableType:
    """Counts, success rate and durations of a window, with counts by status and kind."""
    rate = "" if stats.success_rate is None else f"{stats.success_rate:.1%}"
    summary = Table.grid(padding=(0, 2))
    for name, value in {
        "jobs": str(stats.total_jobs), "active": str(stats.active_jobs), "success rate": rate,
        "average": span(stats.average_duration_seconds), "p50": span(stats.p50_duration_seconds),
        "p95": span(stats.p95_duration_seconds), "processing": span(stats.total_processing_seconds),
    }.items():  # fmt: skip
        summary.add_row(Text(name, style="bold"), plain(value))
    by_status = sorted(stats.jobs_by_status.items(), key=lambda kv: -kv[1])
    statuses = [(Text(status, style=colour(status)), str(n)) for status, n in by_status]
    kinds = [
        (kind, str(n)) for kind, n in sorted(stats.jobs_by_kind.items(), key=lambda kv: -kv[1])
    ]
    title = Text(f"Jobs created in the last {stats.days} days", style="bold")
    return Group(
        title, summary, table(["status", "jobs"], statuses), table(["kind", "jobs"], kinds)
    )


def schedules_table(schedules: list[ScheduleView]) -> Table:
    """Schedules with their rule, last slot, next run and the outcomes of their last slots."""
    rows = [
        (
            s.name,
            s.kind,
            s.cron or f"every {span(s.every_seconds)}",
            s.owner,
            when(s.last_slot_at),
            when(s.next_run_at),
            " ".join(r.outcome for r in s.recent_runs[:5]),
        )
        for s in schedules
    ]
    return table(["name", "kind", "when", "owner", "last slot", "next run", "recent"], rows)


# -- watching -------------------------------------------------------------------------------


def follow(
    backend: Backend, job: Job, timeout: float | None, interval: float, seen: Callable[[Job], None]
) -> Job:
    """Read the job every ``interval`` seconds until it ends; ``JobTimeout`` after ``timeout``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen(job)
    while not job.terminal:
        if deadline is not None and time.monotonic() >= deadline:
            raise JobTimeout(job.id, timeout or 0.0, job.status)
        time.sleep(interval)
        job = backend.get(job.id)
        seen(job)
    return job


def watch(
    backend: Backend, job: Job, timeout: float | None, interval: float, console: Console | None
) -> Job:
    """``follow`` the job, drawing a live progress bar on ``console`` if there is one."""
    if console is None:
        return follow(backend, job, timeout, interval, lambda _: None)
    fields = ("{task.fields[items]}", "{task.fields[eta]}", "{task.fields[message]}")
    columns = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    with Progress(*columns, *map(TextColumn, fields), console=console) as bar:
        task = bar.add_task(job.kind, total=100, items="", eta="", message="")

        def draw(now: Job) -> None:
            description = f"{now.kind} [{COLOURS[now.status]}]{now.status.value}[/]"
            eta = f"ETA {span(now.eta_seconds)}" if now.eta_seconds is not None else ""
            bar.update(task, completed=now.progress, description=description)
            bar.update(task, items=items(now), eta=eta, message=headline(now))

        return follow(backend, job, timeout, interval, draw)


def summary(job: Job) -> Text:
    """The line a watch ends with: how the job ended, how long it took, and why if it failed."""
    mark = "✔" if job.status is Status.SUCCEEDED else "✘"
    line = Text(f"{mark} {job.id} {job.status.value}", style=COLOURS[job.status])
    if job.duration_seconds is not None:
        line.append(f" in {span(job.duration_seconds)}")
    if job.status is not Status.SUCCEEDED and job.error_message:
        line.append(f": {job.error_message}")
    return line
