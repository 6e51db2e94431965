"""The ``jobtrail`` command line: run and serve jobs, read and change them, manage the store."""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import click

from jobtrail.exceptions import JobNotFound, JobTimeout, JobtrailError
from jobtrail.jobs import Priority, Status
from jobtrail.tracker import Tracker

if TYPE_CHECKING:
    from rich.console import Console

    from jobtrail.console import Backend


def load_tracker(spec: str) -> Tracker:
    """The ``Tracker`` named by ``module:attribute`` (the module's handlers get registered)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(f"expected module:attribute, got {spec!r}", param_hint="--app")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        message = f"cannot import {module_name!r}: {exc}"
        raise click.BadParameter(message, param_hint="--app") from exc
    tracker = getattr(module, attribute, None)
    if not isinstance(tracker, Tracker):
        raise click.BadParameter(f"{spec!r} is not a jobtrail.Tracker", param_hint="--app")
    return tracker


database_option = click.option(
    "--database-url", envvar="JOBTRAIL_DATABASE_URL", help="Store URL (env JOBTRAIL_DATABASE_URL)."
)


@click.group()
@click.version_option(package_name="jobtrail")
def main() -> None:
    """jobtrail: what every background job is doing."""


@main.command()
@click.option("--app", "app", required=True, help="module:attribute of your Tracker.")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), help="Worker threads.")
@click.option("--queue", "queues", multiple=True, help="Only these queues (repeatable).")
@click.option("--burst", is_flag=True, help="Exit when no job is due.")
def worker(app: str, concurrency: int | None, queues: tuple[str, ...], burst: bool) -> None:
    """Run jobs until SIGTERM/SIGINT: stop claiming, drain within the grace period, exit."""
    tracker = load_tracker(app)
    runner = tracker.worker(concurrency, queues=queues or None)
    runner.run(burst=burst)
    if runner.alive:
        # A handler ignored every checkpoint past the grace period; its job is already back
        # in the queue and its late writes cannot land, so leaving now loses nothing.
        click.echo("jobtrail: handlers still busy after the grace period; exiting", err=True)
        os._exit(0)


@main.command()
@database_option
@click.option("--succeeded-days", type=float, help="Keep succeeded jobs this many days.")
@click.option("--other-days", type=float, help="Keep failed/partial/cancelled jobs this long.")
@click.option("--max-days", type=float, help="Keep any finished job at most this long.")
def purge(
    database_url: str | None,
    succeeded_days: float | None,
    other_days: float | None,
    max_days: float | None,
) -> None:
    """Delete finished jobs past their retention, keeping their counts in daily rollups."""
    with Tracker(database_url) as tracker:
        deleted = tracker.purge(
            succeeded_days=succeeded_days, other_days=other_days, max_days=max_days
        )
    click.echo(f"purged {deleted} jobs")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@main.command()
@click.option("--app", "app", help="module:attribute of your Tracker (its kinds run here).")
@database_option
@click.option("--host", default="127.0.0.1", show_default=True, envvar="JOBTRAIL_HOST")
@click.option("--port", default=8000, show_default=True, type=int, envvar="JOBTRAIL_PORT")
@click.option("--no-auth", is_flag=True, help="No tokens (loopback addresses only).")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), help="Worker threads.")
@click.option("--no-worker", is_flag=True, help="Serve the API only; run jobs elsewhere.")
def serve(
    app: str | None,
    database_url: str | None,
    host: str,
    port: int,
    no_auth: bool,
    concurrency: int | None,
    no_worker: bool,
) -> None:
    """Serve the REST API (and run the app's jobs in an embedded worker)."""
    import uvicorn

    from jobtrail.web.app import create_app

    if no_auth and not _is_loopback(host):
        raise click.UsageError("--no-auth is only allowed on a loopback address")
    tracker = load_tracker(app) if app else Tracker(database_url)
    if no_auth:
        click.secho(
            "WARNING: authentication is OFF (--no-auth): anyone who can reach "
            f"{host}:{port} can read and change every job.",
            fg="red",
            bold=True,
            err=True,
        )
    elif not tracker.store.list_tokens():
        click.echo("No API tokens yet: create one with `jobtrail tokens create`.", err=True)
    web = create_app(tracker, no_auth=no_auth, run_worker=not no_worker, concurrency=concurrency)
    click.echo(f"jobtrail API on http://{host}:{port}/api/v1 (docs at /docs)", err=True)
    # Open SSE streams (a dashboard tab) must not hold a deploy: after SIGTERM, connections
    # get a few seconds, then the app shuts down (its worker drains in the lifespan).
    uvicorn.run(web, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


@main.group()
def tokens() -> None:
    """Manage API tokens (stored hashed; changes apply to running servers at once)."""


@tokens.command("create")
@database_option
@click.option("--name", help="A name for the token (default: a random one).")
@click.option("--owner", help="Restrict the token to this owner's jobs (default: admin).")
def tokens_create(database_url: str | None, name: str | None, owner: str | None) -> None:
    """Create a token and print it once."""
    import secrets

    with Tracker(database_url) as tracker:
        secret = tracker.store.create_token(name or f"token-{secrets.token_hex(3)}", owner)
    click.echo(secret)


@tokens.command("ls")
@database_option
def tokens_ls(database_url: str | None) -> None:
    """List tokens (never their secrets)."""
    with Tracker(database_url) as tracker:
        for token in tracker.store.list_tokens():
            state = "revoked" if token.revoked_at else "live"
            scope = f"owner={token.owner}" if token.owner else "admin"
            click.echo(f"{token.name}\t{scope}\t{state}\t{token.created_at:%Y-%m-%d %H:%M}")


@tokens.command("revoke")
@database_option
@click.argument("name")
def tokens_revoke(database_url: str | None, name: str) -> None:
    """Revoke a token by name."""
    with Tracker(database_url) as tracker:
        if not tracker.store.revoke_token(name):
            raise click.ClickException(f"no live token named {name!r}")
    click.echo(f"revoked {name}")


@main.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
@database_option
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(database_url: str | None, revision: str) -> None:
    """Apply the schema migrations shipped with this jobtrail."""
    from jobtrail.settings import Settings
    from jobtrail.store.engine import create_engine
    from jobtrail.store.schema import current_revision, upgrade

    engine = create_engine(database_url or Settings().database_url)
    try:
        before = current_revision(engine)
        upgrade(engine, revision)
        after = current_revision(engine)
    finally:
        engine.dispose()
    click.echo(f"schema at revision {after} (was {before or 'empty'})")


@main.command()
@database_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--jobs", "count", default=0, type=int, help="Stop submitting after this many.")
def demo(database_url: str | None, host: str, port: int, count: int) -> None:
    """Serve the dashboard with a stream of realistic demo jobs (open mode, loopback only)."""
    from jobtrail.demo import run_demo

    if not _is_loopback(host):
        raise click.UsageError("the demo runs without authentication: use a loopback address")
    run_demo(database_url or "sqlite:///jobtrail-demo.db", host, port, count)


# -- reading and changing jobs: in the store, or on a server with --url ----------------------


@dataclass(frozen=True)
class Source:
    """Where a command finds jobs: a server (``url``), an app's tracker, or a store URL."""

    url: str | None
    token: str | None
    database_url: str | None
    app: str | None

    def open(self) -> AbstractContextManager[Backend]:
        from jobtrail.console import connect

        return connect(self.url, self.token, self.tracker)

    def tracker(self) -> Tracker:
        return load_tracker(self.app) if self.app else Tracker(self.database_url)


SOURCE_OPTIONS = (
    click.option(
        "--url", envvar="JOBTRAIL_URL", help="A server (env JOBTRAIL_URL); else the store."
    ),
    click.option("--token", envvar="JOBTRAIL_TOKEN", help="Its API token (env JOBTRAIL_TOKEN)."),
    database_option,
    click.option("--app", help="module:attribute of your Tracker: its store, kinds and hooks."),
)


def job_source(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` a ``source`` from the common options, and report jobtrail's errors in
    one line (exit 1) instead of a traceback."""

    @functools.wraps(command)
    def run(
        *args: Any,
        url: str | None,
        token: str | None,
        database_url: str | None,
        app: str | None,
        **kwargs: Any,
    ) -> None:
        try:
            command(*args, source=Source(url, token, database_url, app), **kwargs)
        except JobtrailError as exc:
            raise click.ClickException(str(exc)) from exc

    for option in reversed(SOURCE_OPTIONS):
        run = option(run)
    return run


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    from jobtrail.console import parse_moment

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


def _fail(message: str, exit_code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    raise SystemExit(exit_code)


def _console() -> Console:
    from rich.console import Console

    return Console()


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
owner_option = click.option("--owner", help="Only this owner's jobs.")
kind_option = click.option("--kind", help="Only jobs of this kind.")
PRIORITIES = click.Choice([p.value for p in Priority])


@main.group()
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
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List jobs, newest first, filtered like GET /api/v1/jobs (times in local time)."""
    from jobtrail.console import Query, jobs_table, to_json

    status = [Status(s) for s in statuses]
    query = Query(owner, status, kind, priority, trigger, since, until, q, limit, offset)
    with source.open() as backend:
        page = backend.find(query)
    if as_json:
        click.echo(to_json(page))
    else:
        _console().print(jobs_table(page))


@jobs.command("show")
@click.argument("job_id")
@json_option
@job_source
def jobs_show(source: Source, job_id: str, as_json: bool) -> None:
    """Show a job (JOB_ID, or the start of a recent one's): record, events, failed items,
    error and result."""
    from jobtrail.console import all_events, job_json, job_view, resolve

    with source.open() as backend:
        job = resolve(backend, job_id)
        events = all_events(backend, job.id)
        failed = backend.failed_items(job.id)
    if as_json:
        click.echo(job_json(job, events, failed))
    else:
        _console().print(job_view(job, events, failed))


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
    from jobtrail.console import resolve, summary, to_json, watch

    with source.open() as backend:
        try:
            job = resolve(backend, job_id)
            job = watch(backend, job, timeout, interval, None if as_json else _console())
        except JobNotFound as exc:
            _fail(str(exc), 2)
        except JobTimeout as exc:
            _fail(str(exc), 3)
    if as_json:
        click.echo(to_json(job))
    else:
        _console().print(summary(job))
    raise SystemExit(0 if job.status is Status.SUCCEEDED else 1)


@jobs.command("cancel")
@click.argument("job_id")
@json_option
@job_source
def jobs_cancel(source: Source, job_id: str, as_json: bool) -> None:
    """Cancel a queued job at once, or ask a running one to stop at its next checkpoint."""
    from jobtrail.console import resolve, to_json

    with source.open() as backend:
        job = backend.cancel(resolve(backend, job_id).id)
    if as_json:
        click.echo(to_json(job))
    elif job.status is Status.CANCELLED:
        click.echo(f"cancelled {job.id}")
    else:
        click.echo(f"cancel requested: {job.id} stops at its next checkpoint")


@jobs.command("retry")
@click.argument("job_id")
@click.option("--failed-items", is_flag=True, help="Run only the items that failed before.")
@json_option
@job_source
def jobs_retry(source: Source, job_id: str, failed_items: bool, as_json: bool) -> None:
    """Queue a new job that repeats a failed, partial or cancelled one."""
    from jobtrail.console import resolve, to_json

    with source.open() as backend:
        job = backend.retry(resolve(backend, job_id).id, only_failed_items=failed_items)
    if as_json:
        click.echo(to_json(job))
    else:
        click.echo(f"queued {job.id} (retry of {job.retry_of})")


@main.command()
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
    from jobtrail.console import Submission, to_json

    if not source.url and not source.app:
        raise click.UsageError(
            "submit needs --app module:tracker (where KIND is registered) or --url"
        )
    with source.open() as backend:
        job = backend.submit(Submission(kind, payload, owner, key, priority))
    click.echo(to_json(job) if as_json else f"{job.id} {job.status.value}")


@main.command()
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650))
@owner_option
@kind_option
@json_option
@job_source
def stats(source: Source, days: int, owner: str | None, kind: str | None, as_json: bool) -> None:
    """Counts, success rate and durations of the jobs created in the last --days days."""
    from jobtrail.console import stats_view, to_json

    with source.open() as backend:
        figures = backend.stats(days, owner, kind)
    if as_json:
        click.echo(to_json(figures))
    else:
        _console().print(stats_view(figures))


@main.command()
@json_option
@job_source
def schedules(source: Source, as_json: bool) -> None:
    """List schedules with their rule, last slot, next run and recent outcomes."""
    from jobtrail.console import schedules_table, to_json

    with source.open() as backend:
        found = backend.schedules()
    if as_json:
        click.echo(to_json(found))
    else:
        _console().print(schedules_table(found))
