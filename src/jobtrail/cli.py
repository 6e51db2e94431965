"""The ``jobtrail`` command line: run workers, manage the schema, purge, and watch the demo."""

from __future__ import annotations

import importlib
import os
import sys

import click

from jobtrail.tracker import Tracker


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
@click.option("--jobs", "count", default=0, type=int, help="Stop after this many jobs (0: never).")
def demo(database_url: str | None, count: int) -> None:
    """Run a stream of realistic demo jobs and show them live in the terminal."""
    from jobtrail.demo import run_demo

    run_demo(database_url or "sqlite:///jobtrail-demo.db", count)
