"""The schema version: Alembic migrations shipped in the package, applied and checked at open."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from jobtrail.exceptions import SchemaError, StoreError

MIGRATIONS = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK = 0x6A6F62747261696C  # "jobtrail": one migrator at a time per database


def _config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


@functools.cache
def head_revision() -> str:
    """The newest schema revision this version of jobtrail ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "jobtrail ships at least one migration"
    return head


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every schema revision this version of jobtrail ships."""
    return frozenset(r.revision for r in ScriptDirectory.from_config(_config()).walk_revisions())


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None if it has no jobtrail schema."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``, safely even when several processes start at once."""
    with engine.connect() as conn, _foreign_keys_deferred(conn), conn.begin():
        if conn.dialect.name == "postgresql":
            # A migration may rebuild a large table: no statement timeout for it.
            conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        command.upgrade(_config(conn), revision)
        if conn.dialect.name == "sqlite":
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
            if broken is not None:
                raise StoreError(f"a migration broke a foreign key: {tuple(broken)}")


@contextmanager
def _foreign_keys_deferred(conn: Connection) -> Iterator[None]:
    """On SQLite, foreign keys off while migrations run: a migration that rebuilds a table
    (batch mode) drops it, which SQLite refuses while other tables' rows refer to it. They
    are checked before the commit instead. (The switch only works outside a transaction.)"""
    if conn.dialect.name != "sqlite":
        yield
        return
    driver: Any = conn.connection.driver_connection
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def ensure_schema(engine: Engine, auto_migrate: bool) -> None:
    """Check the schema is the one this jobtrail expects, migrating first if allowed.

    Raises ``SchemaError`` for a revision this version does not know (e.g. a newer jobtrail
    migrated the database) or for an outdated schema when ``auto_migrate`` is off.
    """
    head = head_revision()
    found = current_revision(engine)
    if found == head:
        return
    if found is not None and found not in known_revisions():
        raise SchemaError(found, head)
    if not auto_migrate:
        raise SchemaError(found, head)
    upgrade(engine)
