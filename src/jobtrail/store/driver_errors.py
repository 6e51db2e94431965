"""What the driver's errors become at the store boundary: jobtrail's own, whose messages never
carry a credential, chained to the driver's without its frames (their locals hold the
password it was given, which a traceback printed with its locals would show)."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from jobtrail.exceptions import InvalidData, JobtrailError, StoreError, StoreUnavailable
from jobtrail.redaction import Redactor

_UNWRITABLE = re.compile(r"readonly|read-only|unable to open database file", re.IGNORECASE)
"""SQLite's words for a file (or its directory, or filesystem) it cannot write."""
_UNREACHABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
"""PostgreSQL's SQLSTATEs of a server that cannot be reached: connection exceptions, a server
shutting down or starting up, no connection slot left."""
_CREDENTIALS = Redactor()


def masked(text: str) -> str:
    """``text`` with credentials masked: a URL's password, ``password=…`` of a libpq
    connection string, ``'password': …`` of connection arguments (and other secrets)."""
    return _CREDENTIALS.text(text)


def translated(exc: Exception, dbapi: Any, dialect: str, url: str) -> JobtrailError:
    """jobtrail's error for ``exc``, raised by the driver (``dbapi``) or wrapped by SQLAlchemy,
    on the store at ``url``; raise it ``from exc``, whose frames this drops."""
    forget_frames(exc, dbapi)
    error = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    text = masked(str(error))
    if isinstance(error, dbapi.DataError):
        return InvalidData(text.splitlines()[0] if text else type(error).__name__)
    if unreachable(exc, error, dbapi):
        return StoreUnavailable(" ".join(text.split()) or type(error).__name__)
    if dialect == "sqlite" and _UNWRITABLE.search(text):
        return StoreError(
            f"the SQLite store {masked(url)} is read-only or cannot be opened ({text}): "
            "jobtrail needs to write the file and create its -wal and -shm files beside it"
        )
    return StoreError(f"database error: {type(error).__name__}({text!r})")


def unreachable(exc: Exception, error: BaseException | None, dbapi: Any) -> bool:
    """Whether the database cannot be reached (a connection refused, lost or shut down); a
    SQLite file never is: its errors are the store's."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(error, dbapi.OperationalError):
        return False
    state: str | None = getattr(error, "sqlstate", "")  # None: the client's own (psycopg)
    return state is None or state.startswith(_UNREACHABLE_STATES)


def forget_frames(error: BaseException, dbapi: Any) -> None:
    """Drop the frames of ``error`` and of the driver's and SQLAlchemy's errors it chains (an
    error of the caller's, being handled when this one was raised, keeps its own); the store's
    frames above them stay, in the traceback of the error raised from it."""
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if isinstance(current, sa.exc.SQLAlchemyError | dbapi.Error) and id(current) not in seen:
            seen.add(id(current))
            current.__traceback__ = None
            pending += [current.__cause__, current.__context__]
