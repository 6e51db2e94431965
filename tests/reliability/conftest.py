"""Fixtures of the reliability suite: the test's own tracker with the reliability kinds, and
real worker and server processes on the test's store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobtrail import Tracker
from tests.apps.reliability_handlers import register
from tests.reliability.harness import Processes


@pytest.fixture
def app(tracker: Tracker) -> Tracker:
    """The test's tracker, with the reliability kinds registered so that it can submit."""
    return register(tracker)


@pytest.fixture
def processes(database_url: str, tmp_path: Path) -> Iterator[Processes]:
    """Worker and server processes on the test's store, killed at the end."""
    started = Processes(database_url, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """The file the handlers append their lines to."""
    return tmp_path / "runs.log"
