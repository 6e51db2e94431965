"""Logs: how jobtrail writes its lines without configuring its host's logging.

Every jobtrail logger (``logger(name)``) writes through structlog as the application
configured it. While nobody configured structlog, it writes through the standard library's
logger of the same name (``jobtrail.worker``, ``jobtrail.jobs``, …), so the host's handlers
and levels decide what is shown: with none configured, Python prints WARNING and above to
stderr and nothing else. ``configure_logging()`` — what the ``jobtrail`` command runs, and
what an application may call — sends the lines to stderr at INFO instead. Either way
tracebacks are plain (never the frames' local variables, where a driver keeps the database
password) and credentials in any text are masked.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from jobtrail.redaction import Redactor

_SECRETS = Redactor()


def _masked(logger: Any, method: str, line: MutableMapping[str, Any]) -> Mapping[str, Any]:
    # The last guard: whatever a line's text says (an error's message, a traceback), it never
    # shows a password.
    for key, value in line.items():
        if isinstance(value, str):
            line[key] = _SECRETS.text(value)
    return line


class Logger:
    """A named jobtrail logger (``debug``, ``info``, ``warning``, ``error``, ``exception``)."""

    __slots__ = ("_fields", "_name", "_stdlib")

    def __init__(self, name: str, **fields: Any) -> None:
        self._name = name
        self._fields = fields
        self._stdlib: Any = None

    def bind(self, **fields: Any) -> Logger:
        """This logger with ``fields`` added to each of its lines."""
        return Logger(self._name, **self._fields, **fields)

    def _target(self) -> Any:
        if structlog.is_configured():
            return structlog.get_logger(self._name)
        if self._stdlib is None:
            self._stdlib = structlog.wrap_logger(
                logging.getLogger(self._name),
                processors=[
                    structlog.stdlib.filter_by_level,
                    structlog.processors.format_exc_info,
                    _masked,
                    structlog.dev.ConsoleRenderer(colors=False),
                ],
                wrapper_class=structlog.stdlib.BoundLogger,
            )
        return self._stdlib

    def debug(self, event: str, **fields: Any) -> None:
        """Write ``event`` at DEBUG."""
        self._target().debug(event, **self._fields, **fields)

    def info(self, event: str, **fields: Any) -> None:
        """Write ``event`` at INFO."""
        self._target().info(event, **self._fields, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Write ``event`` at WARNING."""
        self._target().warning(event, **self._fields, **fields)

    def error(self, event: str, **fields: Any) -> None:
        """Write ``event`` at ERROR."""
        self._target().error(event, **self._fields, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        """Write ``event`` at ERROR with the exception being handled (rendered by the
        processors, masked: never handed raw to the standard library, which would print it
        as it is)."""
        self._target().error(event, exc_info=True, **self._fields, **fields)


def logger(name: str) -> Logger:
    """The jobtrail logger ``name``."""
    return Logger(name)


def configure_logging() -> None:
    """Send jobtrail's lines to stderr at INFO, unless the application configured structlog
    (then it decides everything): stdout stays the application's own (a command's JSON, a
    script's output), and DEBUG lines (progress) stay quiet."""
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.processors.format_exc_info,
            _masked,
            structlog.dev.ConsoleRenderer(colors=_colors()),
        ],
        logger_factory=_stderr,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )


def _colors() -> bool:
    # As structlog decides by default, but for stderr, where the lines go.
    if os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or getattr(sys.stderr, "isatty", bool)()


def _stderr(*args: Any) -> structlog.PrintLogger:
    # Whatever ``sys.stderr`` is when a line is written (a test's capture, a redirected one).
    return structlog.PrintLogger(sys.stderr)
