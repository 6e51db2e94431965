"""Alembic environment: runs jobtrail's migrations on the connection the store hands over."""

from __future__ import annotations

from alembic import context

from jobtrail.store.database import create_engine
from jobtrail.store.tables import metadata

_conn = context.config.attributes.get("connection")
if _conn is None:
    _url = context.config.get_main_option("sqlalchemy.url")
    if not _url:
        raise RuntimeError("jobtrail migrations need a connection or sqlalchemy.url")
    with create_engine(_url).begin() as _own:
        context.configure(connection=_own, target_metadata=metadata, render_as_batch=True)
        context.run_migrations()
else:
    context.configure(connection=_conn, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
