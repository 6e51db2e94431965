"""Where a command finds its tracker and jobs: an app's tracker, an existing store, or a server."""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec

import click

from jobtrail.exceptions import JobtrailError
from jobtrail.tracker import Tracker

if TYPE_CHECKING:
    from jobtrail.cli.client import Backend

P = ParamSpec("P")


class NoStore(JobtrailError):
    """A command that reads or changes existing jobs was pointed at a SQLite file that is not
    there (it would otherwise create an empty store and find nothing in it)."""

    def __init__(self, path: str, servers: bool) -> None:
        self.path = path
        server = " at a server with --url," if servers else ""
        super().__init__(
            f"no jobtrail store at {path}; point at one with --database-url or "
            f"JOBTRAIL_DATABASE_URL,{server} or create it with `jobtrail db upgrade`"
        )


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


def missing_sqlite_file(url: str) -> str | None:
    """The absolute path of the SQLite file ``url`` names, if it names one that does not exist."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # not a URL: the store says so itself
    if parsed.get_backend_name() != "sqlite" or parsed.query.get("uri"):
        return None
    if parsed.database in (None, "", ":memory:"):
        return None
    path = os.path.abspath(parsed.database)
    return None if os.path.exists(path) else path


def existing_tracker(database_url: str | None, servers: bool = False) -> Tracker:
    """A tracker on the store that is already at ``database_url`` (else the configured one),
    which it neither creates nor migrates; ``servers``: the command could use --url instead."""
    from jobtrail.settings import Settings

    url = database_url or Settings().database_url
    missing = missing_sqlite_file(url)
    if missing is not None:
        raise NoStore(missing, servers)
    return Tracker(url, auto_migrate=False).open()


database_option = click.option(
    "--database-url", envvar="JOBTRAIL_DATABASE_URL", help="Store URL (env JOBTRAIL_DATABASE_URL)."
)


def one_line_errors(command: Callable[P, None]) -> Callable[P, None]:
    """Report jobtrail's errors from ``command`` in one line (exit 1) instead of a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        _refuse_undecodable(kwargs)
        try:
            command(*args, **kwargs)
        except JobtrailError as exc:
            raise click.ClickException(str(exc)) from exc

    return run


def _refuse_undecodable(arguments: dict[str, Any]) -> None:
    """Refuse, in one line, an argument that is not UTF-8 text (the shell passed bytes that
    decode only to lone surrogates), before it reaches a database or a server."""
    for name, value in arguments.items():
        for text in value if isinstance(value, tuple | list) else [value]:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    option = name.replace("_", "-")
                    raise click.ClickException(f"{option} is not valid UTF-8 text") from None


@dataclass(frozen=True)
class Source:
    """Where a command finds jobs: a server (``url``), an app's tracker, or a store URL."""

    url: str | None
    token: str | None
    database_url: str | None
    app: str | None

    def open(self) -> AbstractContextManager[Backend]:
        from jobtrail.cli.client import connect

        return connect(self.url, self.token, self.tracker)

    def tracker(self) -> Tracker:
        if self.app:
            return load_tracker(self.app)
        return existing_tracker(self.database_url, servers=True)


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

    @one_line_errors
    @functools.wraps(command)
    def run(
        *args: Any,
        url: str | None,
        token: str | None,
        database_url: str | None,
        app: str | None,
        **kwargs: Any,
    ) -> None:
        command(*args, source=Source(url, token, database_url, app), **kwargs)

    for option in reversed(SOURCE_OPTIONS):
        run = option(run)
    return run
