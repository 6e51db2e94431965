"""The web tests' app: the router in a FastAPI app on a SQLite file and on PostgreSQL, driven
in process by Starlette's TestClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobtrail import Tracker
from jobtrail.web import create_app
from tests.apps.api_handlers import register
from tests.web.client import BODY_LIMIT, Api, open_client


@pytest.fixture
def api_tracker(database_url: str) -> Iterator[Tracker]:
    """A tracker with the test kinds, a fast worker poll and a small body limit."""
    with Tracker(
        database_url, flush_interval=0.02, poll_interval=0.02, max_body_bytes=BODY_LIMIT
    ) as tracker:
        yield register(tracker)


@pytest.fixture
def api(api_tracker: Tracker) -> Iterator[Api]:
    """The standalone app without a worker: submitted jobs stay queued."""
    with open_client(create_app(api_tracker, run_worker=False)) as client:
        yield Api.with_tokens(api_tracker, client)


@pytest.fixture
def served(api_tracker: Tracker) -> Iterator[Api]:
    """The standalone app with its embedded worker running (started by the app's lifespan)."""
    with open_client(create_app(api_tracker, concurrency=2)) as client:
        yield Api.with_tokens(api_tracker, client)
