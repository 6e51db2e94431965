"""How the command line prints jobs: rich tables and views, the live watch bar, and JSON."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pydantic_core
from rich import box
from rich import json as rich_json
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from jobtrail.cli.client import Backend, follow
from jobtrail.jobs import Event, FailedItem, Job, Page, ScheduleInfo, Stats, WorkerInfo
from jobtrail.states import Status

COLOURS = {
    Status.QUEUED: "cyan",
    Status.WAITING: "blue",
    Status.RUNNING: "yellow",
    Status.SUCCEEDED: "green",
    Status.PARTIAL: "dark_orange",
    Status.FAILED: "red",
    Status.CANCELLED: "bright_black",
}
SHOWN_ITEMS = 100
"""Failed items ``jobs show`` prints; ``--json`` has every one the job lists."""


# What a terminal would act on rather than print: CSI sequences (colours, cursor moves,
# clearing), OSC/DCS/PM/APC/SOS strings (window titles, hyperlinks, clipboard writes) up to
# their terminator, any other escape, C0/C1 controls but tab and newline, and bidirectional
# overrides. Each alternative starts at one fixed character, so stripping is linear.
_CONTROLS = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b."
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]",
    re.DOTALL,
)


PIPED_WIDTH = 400
"""Columns of output that goes to a file or a pipe: wide enough that no table cell is cut
("ow…", "succe…"), where a terminal's own width applies otherwise."""


def console() -> Console:
    """Where a command prints: the terminal at its width, or a pipe at ``PIPED_WIDTH``."""
    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=PIPED_WIDTH)


def printable(value: str | None) -> str:
    """A job's text as the terminal shows it: never an escape or control sequence (tab and
    newline stay, for tracebacks)."""
    if not value:
        return ""
    return _CONTROLS.sub("", value)


def to_json(value: Any) -> str:
    """Records (and lists or dicts of them) as indented JSON, times in ISO 8601."""
    return pydantic_core.to_json(value, indent=2).decode()


def job_json(job: Job, events: list[Event], failed: list[FailedItem]) -> str:
    """A job's record with its ``events`` and ``failed_items`` added, as JSON."""
    record = pydantic_core.to_jsonable_python(job)
    return to_json(record | {"events": events, "failed_items": failed})


def compact_json(value: Any) -> str:
    """A JSON value on one line."""
    return pydantic_core.to_json(value).decode()


def label(word: str) -> Text:
    """An event's or a status's name, in its colour."""
    return Text(printable(word), style=colour(word))


def colour(word: str) -> str:
    """The colour of a status, or of the event that records it; none for other words."""
    return COLOURS[Status(word)] if word in Status.__members__.values() else ""


def plain(value: str | Text | None) -> Text:
    """A cell's text as it is: a job's words are never read as rich markup, and never
    reach the terminal as control sequences."""
    return value if isinstance(value, Text) else Text(printable(value))


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
    """How a job is doing in one line: its error once it ended badly, why it waits while it
    waits, else its message."""
    waiting = job.wait_reason if job.status is Status.WAITING else None
    return (job.error_message if job.terminal else None) or waiting or job.message or ""


def staged(job: Job, style: str = "") -> Text:
    """A job's ``headline`` after its current stage, in bold, while it runs."""
    line = Text(no_wrap=True, overflow="ellipsis")
    if job.stage and not job.terminal:
        line.append(f"{printable(job.stage)} ", style="bold")
    line.append(printable(headline(job)), style=style)
    return line


def table(columns: Sequence[str], rows: Sequence[Sequence[str | Text | None]]) -> Table:
    """A plain table whose long cells wrap."""
    view = Table(box=box.SIMPLE_HEAD)
    for name in columns:
        view.add_column(name, overflow="fold")
    for row in rows:
        view.add_row(*map(plain, row))
    return view


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
        message = staged(job, style)
        progress = f"{job.progress:.0f}%"
        cells = [job.id[:8], job.kind, job.owner, status, progress, items(job), created, duration]
        table.add_row(*[plain(cell) for cell in cells], message)
    return table


def job_facts(job: Job) -> Table:
    """A job's record, one named fact a line, leaving out the empty ones."""
    status = Text(job.status.value, style=COLOURS[job.status])
    if job.cancel_requested and not job.terminal:
        status.append(" (cancel requested)")
    if job.status is Status.WAITING and job.wait_reason:
        status.append(f": {printable(job.wait_reason)}")
    facts: dict[str, str | Text] = {
        "id": job.id, "kind": job.kind, "status": status, "owner": job.owner or "",
        "trigger": job.trigger, "priority": job.priority.value, "queue": job.queue,
        "attempt": f"{job.attempt} of {job.max_attempts}", "progress": f"{job.progress:.0f}%",
        "items": items(job), "stage": job.stage or "", "message": job.message or "",
        "created": when(job.created_at),
        "started": when(job.started_at), "completed": when(job.completed_at),
        "duration": span(elapsed(job)), "eta": span(job.eta_seconds), "worker": job.worker or "",
        "key": job.key or "", "schedule": job.schedule or "", "retry of": job.retry_of or "",
        "labels": to_json(job.labels) if job.labels else "",
        "payload": "" if job.payload is None else compact_json(job.payload),
    }  # fmt: skip
    grid = Table.grid(padding=(0, 2))
    for name, value in facts.items():
        if value:
            grid.add_row(Text(name, style="bold"), plain(value))
    return grid


def job_view(job: Job, events: list[Event], failed: list[FailedItem]) -> RenderableType:
    """One job: its record, history, failed items, error and result."""
    history = [(when(e.at), label(e.type), e.message, e.actor) for e in events]
    parts: list[RenderableType] = [job_facts(job), Text("\nEvents", style="bold")]
    parts.append(table(["at", "event", "message", "actor"], history))
    if failed:
        parts += failed_view(job, failed)
    if job.error_message:
        error = Text(printable(job.error_message), style="red")
        parts += [Text("Error", style="bold red"), error]
    if isinstance(job.error_details, dict) and job.error_details.get("traceback"):
        traceback = printable(str(job.error_details["traceback"])).rstrip()
        parts.append(Text(traceback, style="bright_black"))
    if job.result is not None:
        result = rich_json.JSON(printable(compact_json(job.result)))
        parts += [Text("Result", style="bold"), result]
    return Group(*parts)


def failed_view(job: Job, failed: list[FailedItem]) -> list[RenderableType]:
    """The first ``SHOWN_ITEMS`` failed items of a job, saying how many more it lists and
    whether it failed more than it lists."""
    rows = [(f.item_id, f.error_type, f.message) for f in failed[:SHOWN_ITEMS]]
    counted = job.items_failed or 0
    listed = f"{len(failed)} listed, {counted} failed" if counted > len(failed) else len(failed)
    parts: list[RenderableType] = [Text(f"Failed items ({listed})", style="bold")]
    parts.append(table(["item", "error", "message"], rows))
    if len(failed) > SHOWN_ITEMS:
        more = f"… and {len(failed) - SHOWN_ITEMS} more listed (--json shows every one)"
        parts.append(Text(more, style="bright_black"))
    return parts


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
    statuses = [(label(status), str(n)) for status, n in by_status]
    kinds = [
        (kind, str(n)) for kind, n in sorted(stats.jobs_by_kind.items(), key=lambda kv: -kv[1])
    ]
    title = Text(f"Jobs created in the last {stats.days} days", style="bold")
    parts: list[RenderableType] = [title, summary, table(["status", "jobs"], statuses)]
    parts.append(table(["kind", "jobs"], kinds))
    if stats.groups:
        parts.append(table(["group", "jobs", "active", "success rate", "p50", "p95"], [
            (name or "(none)", str(g.total_jobs), str(g.active_jobs),
             "" if g.success_rate is None else f"{g.success_rate:.1%}",
             span(g.p50_duration_seconds), span(g.p95_duration_seconds))
            for name, g in stats.groups.items()
        ]))  # fmt: skip
    return Group(*parts)


def schedules_table(schedules: Sequence[ScheduleInfo]) -> Table:
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


def workers_table(workers: Sequence[WorkerInfo]) -> Table:
    """Live workers: where they run, what they consume, how busy they are."""
    rows = [
        (
            w.engine,
            f"{w.host}:{w.pid}",
            "*" if w.queues is None else ", ".join(w.queues),
            f"{w.running}/{w.concurrency}",
            when(w.started_at),
            when(w.last_seen_at),
            ", ".join(w.kinds),
        )
        for w in workers
    ]
    columns = ["engine", "process", "queues", "running", "started", "last seen", "kinds"]
    return table(columns, rows)


def watch(
    backend: Backend, job: Job, timeout: float | None, interval: float, console: Console | None
) -> Job:
    """``follow`` the job, drawing a live progress bar on ``console`` if there is one."""
    if console is None:
        return follow(backend, job, timeout, interval, lambda _: None)
    fields = ("{task.fields[items]}", "{task.fields[eta]}", "{task.fields[message]}")
    columns = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    with Progress(*columns, *map(TextColumn, fields), console=console) as bar:
        task = bar.add_task(escape(printable(job.kind)), total=100, items="", eta="", message="")

        def draw(now: Job) -> None:
            kind = escape(printable(now.kind))
            description = f"{kind} [{COLOURS[now.status]}]{now.status.value}[/]"
            eta = f"ETA {span(now.eta_seconds)}" if now.eta_seconds is not None else ""
            message = staged(now).markup
            bar.update(task, completed=now.progress, description=description)
            bar.update(task, items=items(now), eta=eta, message=message)

        return follow(backend, job, timeout, interval, draw)


def summary(job: Job) -> Text:
    """The line a watch ends with: how the job ended, how long it took, and why if it failed."""
    mark = "✔" if job.status is Status.SUCCEEDED else "✘"
    line = Text(f"{mark} {printable(job.id)} {job.status.value}", style=COLOURS[job.status])
    if job.duration_seconds is not None:
        line.append(f" in {span(job.duration_seconds)}")
    if job.status is not Status.SUCCEEDED and job.error_message:
        line.append(f": {printable(job.error_message)}")
    return line
