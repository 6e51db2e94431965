"""The commands that read and change jobs, in the store or on a server (``--url``)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, NoReturn

import click

from jobtrail.cli.client import (
    Query,
    Submission,
    all_events,
    all_failed_items,
    parse_moment,
    resolve,
)
from jobtrail.cli.source import Source, job_source
from jobtrail.cli.views import (
    console,
    job_json,
    job_view,
    jobs_table,
    printable,
    schedules_table,
    stats_view,
    summary,
    to_json,
    watch,
    workers_table,
)
from jobtrail.exceptions import JobNotFound, JobTimeout
from jobtrail.states import Priority, Status


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    try:
        return None if value is None else parse_moment(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _json_object(ctx: click.Context, param: click.Parameter, value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter('must be a JSON object, e.g. \'{"account_id": "A1"}\'')
    return parsed


def _labels(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for text in value:
        key, colon, wanted = text.partition(":")
        if not key or not colon:
            raise click.BadParameter(f"{text!r} is not KEY:VALUE (e.g. document_type:pdf)")
        found[key] = wanted
    return found


def _group_by(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or re.fullmatch(r"kind|owner|label:.+", value):
        return value
    raise click.BadParameter(f"{value!r} is not kind, owner or label:KEY")


def _fail(message: str, exit_code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    raise SystemExit(exit_code)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
owner_option = click.option("--owner", help="Only this owner's jobs.")
kind_option = click.option("--kind", help="Only jobs of this kind.")
PRIORITIES = click.Choice([p.value for p in Priority])


@click.group()
def jobs() -> None:
    """List, show, watch, cancel and retry jobs, in the store or on a server (--url)."""


@jobs.command("ls")
@owner_option
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in Status]),
    help="Only jobs in this status (repeatable).",
)
@kind_option
@click.option("--priority", type=PRIORITIES, help="Only jobs of this priority.")
@click.option("--trigger", help="Only jobs started this way (manual, scheduled, api, …).")
@click.option(
    "--since",
    metavar="TIME",
    callback=_moment,
    help="Created at or after: ISO time, or age (2h, 7d).",
)
@click.option("--until", metavar="TIME", callback=_moment, help="Created before: ISO time, or age.")
@click.option("-q", "q", help="An exact id or key, or text in the message.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY:VALUE",
    callback=_labels,
    help="Only jobs with this label (repeatable: all must match).",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0))
@json_option
@job_source
def jobs_ls(
    source: Source,
    owner: str | None,
    statuses: tuple[str, ...],
    kind: str | None,
    priority: str | None,
    trigger: str | None,
    since: datetime | None,
    until: datetime | None,
    q: str | None,
    labels: dict[str, str],
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List jobs, newest first, filtered like GET /api/v1/jobs (times in local time)."""
    status = [Status(s) for s in statuses]
    query = Query(owner, status, kind, priority, trigger, since, until, q, limit, offset, labels)
    with source.open() as backend:
        page = backend.find(query)
    if as_json:
        click.echo(to_json(page))
    else:
        console().print(jobs_table(page))


@jobs.command("show")
@click.argument("job_id")
@json_option
@job_source
def jobs_show(source: Source, job_id: str, as_json: bool) -> None:
    """Show a job (JOB_ID, or the start of a recent one's): record, events, failed items,
    error and result."""
    with source.open() as backend:
        job = resolve(backend, job_id)
        events = all_events(backend, job.id)
        failed = all_failed_items(backend, job.id)
    if as_json:
        click.echo(job_json(job, events, failed))
    else:
        console().print(job_view(job, events, failed))


@jobs.command("watch")
@click.argument("job_id")
@click.option("--timeout", type=click.FloatRange(min=0), help="Give up after this many seconds.")
@click.option("--interval", default=0.25, show_default=True, type=click.FloatRange(min=0.01))
@json_option
@job_source
def jobs_watch(
    source: Source, job_id: str, timeout: float | None, interval: float, as_json: bool
) -> None:
    """Follow a job with a live progress bar until it ends (--json: then print it).

    Exits 0 if it succeeded; 1 if it failed, ended partial or was cancelled; 2 if there is no
    such job; 3 if --timeout passed first.
    """
    with source.open() as backend:
        try:
            job = resolve(backend, job_id)
            job = watch(backend, job, timeout, interval, None if as_json else console())
        except JobNotFound as exc:
            _fail(str(exc), 2)
        except JobTimeout as exc:
            _fail(str(exc), 3)
    if as_json:
        click.echo(to_json(job))
    else:
        console().print(summary(job))
    raise SystemExit(0 if job.status is Status.SUCCEEDED else 1)


@jobs.command("cancel")
@click.argument("job_id")
@json_option
@job_source
def jobs_cancel(source: Source, job_id: str, as_json: bool) -> None:
    """Cancel a queued job at once, or ask a running one to stop at its next checkpoint."""
    with source.open() as backend:
        job = backend.cancel(resolve(backend, job_id).id)
    if as_json:
        click.echo(to_json(job))
    elif job.status is Status.CANCELLED:
        click.echo(f"cancelled {printable(job.id)}")
    else:
        click.echo(f"cancel requested: {printable(job.id)} stops at its next checkpoint")


@jobs.command("retry")
@click.argument("job_id")
@click.option("--failed-items", is_flag=True, help="Run only the items that failed before.")
@json_option
@job_source
def jobs_retry(source: Source, job_id: str, failed_items: bool, as_json: bool) -> None:
    """Queue a new job that repeats a failed, partial or cancelled one."""
    with source.open() as backend:
        job = backend.retry(resolve(backend, job_id).id, only_failed_items=failed_items)
    if as_json:
        click.echo(to_json(job))
    else:
        click.echo(f"queued {printable(job.id)} (retry of {printable(job.retry_of)})")


@click.command()
@click.argument("kind")
@click.option(
    "--payload",
    default="{}",
    metavar="JSON",
    callback=_json_object,
    help="Arguments: a JSON object.",
)
@click.option("--owner", help="The owner (tenant) of the job.")
@click.option("--key", help="Idempotency key: an existing key returns the existing job.")
@click.option("--priority", type=PRIORITIES, help="Claim order among queued jobs.")
@json_option
@job_source
def submit(
    source: Source,
    kind: str,
    payload: dict[str, Any],
    owner: str | None,
    key: str | None,
    priority: str | None,
    as_json: bool,
) -> None:
    """Queue a job of KIND on a server (--url), or in the store of --app module:tracker, where
    KIND's handler is registered; prints its id and status."""
    if not source.url and not source.app:
        raise click.UsageError(
            "submit needs --app module:tracker (where KIND is registered) or --url"
        )
    with source.open() as backend:
        job = backend.submit(Submission(kind, payload, owner, key, priority))
    click.echo(to_json(job) if as_json else f"{job.id} {job.status.value}")


@click.command()
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650))
@owner_option
@kind_option
@click.option(
    "--group-by",
    metavar="kind|owner|label:KEY",
    callback=_group_by,
    help="Also the figures per kind, owner or value of a label (the 50 largest groups).",
)
@json_option
@job_source
def stats(
    source: Source,
    days: int,
    owner: str | None,
    kind: str | None,
    group_by: str | None,
    as_json: bool,
) -> None:
    """Counts, success rate and durations of the jobs created in the last --days days."""
    with source.open() as backend:
        figures = backend.stats(days, owner, kind, group_by)
    if as_json:
        click.echo(to_json(figures))
    else:
        console().print(stats_view(figures))


@click.command()
@json_option
@job_source
def schedules(source: Source, as_json: bool) -> None:
    """List schedules with their rule, last slot, next run and recent outcomes."""
    with source.open() as backend:
        found = backend.schedules()
    if as_json:
        click.echo(to_json(found))
    else:
        console().print(schedules_table(found))


@click.command()
@json_option
@job_source
def workers(source: Source, as_json: bool) -> None:
    """List live workers (jobtrail's and Celery's): process, queues ("*": every queue), jobs
    running of threads, started, last seen, kinds. On a server: an admin token's."""
    with source.open() as backend:
        found = backend.workers()
    if as_json:
        click.echo(to_json(found))
    elif not found:
        click.echo("no live worker")
    else:
        console().print(workers_table(found))
