"""structlog's process-wide configuration, put back as it was after a test changes it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import structlog


@contextmanager
def configured_as_before() -> Iterator[None]:
    """structlog's configuration (and whether there is one) restored when the block ends."""
    was, saved = structlog.is_configured(), structlog.get_config()
    try:
        yield
    finally:
        structlog.reset_defaults()
        if was:
            structlog.configure(**saved)
