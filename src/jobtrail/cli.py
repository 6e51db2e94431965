"""The ``jobtrail`` command line."""

from __future__ import annotations

import click

from jobtrail.settings import Settings


def _database_url(url: str | None) -> str:
    return url or Settings().database_url


@click.group()
@click.version_option(package_name="jobtrail")
def main() -> None:
    """jobtrail: what every background job is doing."""


@main.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
@click.option("--database-url", envvar="JOBTRAIL_DATABASE_URL", help="Store URL.")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(database_url: str | None, revision: str) -> None:
    """Apply the schema migrations shipped with this jobtrail."""
    from jobtrail.store.engine import create_engine
    from jobtrail.store.schema import current_revision, upgrade

    engine = create_engine(_database_url(database_url))
    try:
        before = current_revision(engine)
        upgrade(engine, revision)
        after = current_revision(engine)
    finally:
        engine.dispose()
    click.echo(f"schema at revision {after} (was {before or 'empty'})")
