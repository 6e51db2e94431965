"""The commands that run and administer jobtrail: worker, serve, demo, purge, schema and tokens."""

from __future__ import annotations

import ipaddress
import os
import secrets
from typing import TYPE_CHECKING, Any

import click

from jobtrail.cli.source import database_option, existing_tracker, load_tracker, one_line_errors
from jobtrail.extras import require
from jobtrail.tracker import Tracker

if TYPE_CHECKING:
    from fastapi import FastAPI


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost`` or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--app", "app", required=True, help="module:attribute of your Tracker.")
@database_option
@click.option("--concurrency", "-c", type=click.IntRange(min=1), help="Worker threads.")
@click.option("--queue", "queues", multiple=True, help="Only these queues (repeatable).")
@click.option("--burst", is_flag=True, help="Exit when no job is due.")
@one_line_errors
def worker(
    app: str,
    database_url: str | None,
    concurrency: int | None,
    queues: tuple[str, ...],
    burst: bool,
) -> None:
    """Run jobs until SIGTERM/SIGINT: stop claiming, drain within the grace period, exit.
    ``--database-url`` is the store of an app whose ``Tracker()`` names none itself."""
    if database_url:  # read by the app's Tracker() as it is imported
        os.environ["JOBTRAIL_DATABASE_URL"] = database_url
    tracker = load_tracker(app).open()
    runner = tracker.worker(concurrency, queues=queues or None)
    runner.run(burst=burst)
    if runner.alive:
        # A handler ignored every checkpoint past the grace period; its job is already back
        # in the queue and its late writes cannot land, so leaving now loses nothing.
        click.echo("jobtrail: handlers still busy after the grace period; exiting", err=True)
        os._exit(0)


@click.command()
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


def warn_about_access(tracker: Tracker, no_auth: bool, address: str) -> None:
    """Say on stderr when anyone can use the server, or when no token can use it yet."""
    if no_auth:
        click.secho(
            "WARNING: authentication is OFF (--no-auth): anyone who can reach "
            f"{address} can read and change every job.",
            fg="red",
            bold=True,
            err=True,
        )
    elif not tracker.ops.tokens():
        click.echo("No API tokens yet: create one with `jobtrail tokens create`.", err=True)


SERVE_APP = "JOBTRAIL_SERVE_APP"
SERVE_NO_AUTH = "JOBTRAIL_SERVE_NO_AUTH"


def served_api() -> FastAPI:
    """The application each HTTP process of ``serve --workers N`` serves: the API and the
    dashboard only; the command's own process runs the jobs and the maintenance."""
    from jobtrail.web.app import create_app

    spec = os.environ.get(SERVE_APP)
    tracker = (load_tracker(spec) if spec else Tracker()).open()
    no_auth = os.environ.get(SERVE_NO_AUTH) == "1"
    return create_app(tracker, no_auth=no_auth, run_worker=False, maintain=False)


@click.command()
@click.option("--app", "app", help="module:attribute of your Tracker (its kinds run here).")
@database_option
@click.option("--host", default="127.0.0.1", show_default=True, envvar="JOBTRAIL_HOST")
@click.option("--port", default=8000, show_default=True, type=int, envvar="JOBTRAIL_PORT")
@click.option("--no-auth", is_flag=True, help="No tokens (loopback addresses only).")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), help="Worker threads.")
@click.option("--no-worker", is_flag=True, help="Serve the API only; run jobs elsewhere.")
@click.option(
    "--workers",
    "processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    envvar="JOBTRAIL_SERVE_WORKERS",
    help="HTTP server processes; jobs still run in one embedded worker, in this process.",
)
@one_line_errors
def serve(
    app: str | None,
    database_url: str | None,
    host: str,
    port: int,
    no_auth: bool,
    concurrency: int | None,
    no_worker: bool,
    processes: int,
) -> None:
    """Serve the REST API (and run the app's jobs in an embedded worker)."""
    require("web", "jobtrail serve")
    import uvicorn

    from jobtrail.web.app import create_app

    if no_auth and not is_loopback(host):
        raise click.UsageError("--no-auth is only allowed on a loopback address")
    tracker = (load_tracker(app) if app else Tracker(database_url)).open()
    warn_about_access(tracker, no_auth, f"{host}:{port}")
    click.echo(f"jobtrail API on http://{host}:{port}/api/v1 (docs at /docs)", err=True)
    # Open SSE streams (a dashboard tab) must not hold a deploy: after SIGTERM, connections
    # get a few seconds, then the app shuts down (its worker drains in the lifespan).
    options: dict[str, Any] = {"host": host, "port": port, "log_level": "info"}
    options["timeout_graceful_shutdown"] = 5
    if processes == 1:
        web = create_app(
            tracker, no_auth=no_auth, run_worker=not no_worker, concurrency=concurrency
        )
        uvicorn.run(web, **options)
        return
    # Several HTTP processes (started afresh, not forked, by uvicorn) serve the API; this
    # process runs the one worker: jobs, rescue, expiry and purges happen once, not N times.
    os.environ[SERVE_APP] = app or ""
    os.environ[SERVE_NO_AUTH] = "1" if no_auth else ""
    if database_url:
        os.environ["JOBTRAIL_DATABASE_URL"] = database_url
    worker = tracker.worker(concurrency, consume=not no_worker)
    worker.start()
    try:
        uvicorn.run(f"{__name__}:served_api", factory=True, workers=processes, **options)
    finally:
        worker.stop()


@click.command()
@database_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--jobs", "count", default=0, type=int, help="Stop submitting after this many.")
@one_line_errors
def demo(database_url: str | None, host: str, port: int, count: int) -> None:
    """Serve the dashboard with a stream of realistic demo jobs (open mode, loopback only)."""
    require("web", "jobtrail demo")
    from jobtrail.demo import run_demo

    if not is_loopback(host):
        raise click.UsageError("the demo runs without authentication: use a loopback address")
    run_demo(database_url or "sqlite:///jobtrail-demo.db", host, port, count)


@click.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
@database_option
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(database_url: str | None, revision: str) -> None:
    """Apply the schema migrations shipped with this jobtrail."""
    from jobtrail.settings import Settings
    from jobtrail.store.database import create_engine
    from jobtrail.store.migrate import current_revision, upgrade

    engine = create_engine(database_url or Settings().database_url)
    try:
        before = current_revision(engine)
        upgrade(engine, revision)
        after = current_revision(engine)
    finally:
        engine.dispose()
    click.echo(f"schema at revision {after} (was {before or 'empty'})")


@click.group()
def tokens() -> None:
    """Manage API tokens (stored hashed; changes apply to running servers at once)."""


@tokens.command("create")
@database_option
@click.option("--name", help="A name for the token (default: a random one).")
@click.option("--owner", help="Restrict the token to this owner's jobs (default: admin).")
@one_line_errors
def tokens_create(database_url: str | None, name: str | None, owner: str | None) -> None:
    """Create a token and print it once."""
    with Tracker(database_url) as tracker:
        secret = tracker.ops.create_token(name or f"token-{secrets.token_hex(3)}", owner)
    click.echo(secret)


@tokens.command("ls")
@database_option
@one_line_errors
def tokens_ls(database_url: str | None) -> None:
    """List tokens (never their secrets)."""
    with existing_tracker(database_url) as tracker:
        for token in tracker.ops.tokens():
            state = "revoked" if token.revoked_at else "live"
            scope = f"owner={token.owner}" if token.owner else "admin"
            click.echo(f"{token.name}\t{scope}\t{state}\t{token.created_at:%Y-%m-%d %H:%M}")


@tokens.command("revoke")
@database_option
@click.argument("name")
@one_line_errors
def tokens_revoke(database_url: str | None, name: str) -> None:
    """Revoke a token by name."""
    with existing_tracker(database_url) as tracker:
        if not tracker.ops.revoke_token(name):
            raise click.ClickException(f"no live token named {name!r}")
    click.echo(f"revoked {name}")
