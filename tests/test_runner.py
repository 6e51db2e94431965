"""The runner: retry backoff, results that cannot be stored, outcomes that outlive an outage."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from jobtrail import Context, Status, Tracker
from jobtrail.runner import MAX_RETRY_DELAY, retry_delay
from tests.conftest import TEMPLATE
from tests.servers import PostgresServer


@pytest.mark.parametrize(
    ("attempt", "base", "low", "high"),
    [(1, 2.0, 1.0, 2.0), (2, 2.0, 2.0, 4.0), (3, 2.0, 4.0, 8.0), (40, 1.0, 1800.0, 3600.0)],
)
def test_retry_delays_double_with_each_attempt_with_jitter_up_to_a_cap(
    attempt: int, base: float, low: float, high: float
) -> None:
    delays = [retry_delay(attempt, base) for _ in range(200)]

    assert all(low <= d <= high for d in delays)
    assert max(delays) <= MAX_RETRY_DELAY
    assert len(set(delays)) > 1, "jitter spreads retries of jobs that failed together"


def test_a_result_that_is_not_json_fails_the_job_and_the_worker_goes_on(tracker: Tracker) -> None:
    @tracker.job("odd")
    def odd(ctx: Context, good: bool) -> object:
        return "fine" if good else {1, 2}

    bad, good = odd.submit(good=False), odd.submit(good=True)
    tracker.worker(1, poll_interval=0.01).run(burst=True)

    failed = tracker.get(bad.id)
    assert failed.status is Status.FAILED
    assert failed.error_message is not None
    assert failed.error_message.startswith("TypeError")
    assert "JSON serializable" in failed.error_message
    assert failed.result is None
    assert tracker.get(good.id).result == "fine"


@pytest.fixture
def own_postgres(postgres: PostgresServer) -> Iterator[tuple[PostgresServer, str]]:
    """A fresh database on the session's PostgreSQL server, and the server itself."""
    name = f"runner_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name, template=TEMPLATE)
    try:
        yield postgres, url
    finally:
        postgres.drop_database(name)


@pytest.mark.postgres
@pytest.mark.timeout(90)
def test_an_outcome_reached_while_the_database_is_down_is_recorded_once_it_is_back(
    own_postgres: tuple[PostgresServer, str],
) -> None:
    server, url = own_postgres
    started, release, returned = threading.Event(), threading.Event(), threading.Event()
    with Tracker(url, flush_interval=0.05) as tracker:

        @tracker.job("survivor")
        def survivor(ctx: Context) -> str:
            started.set()
            release.wait(30)
            returned.set()
            return "recorded"

        job = survivor.submit()
        with tracker.worker(1, poll_interval=0.01, heartbeat_interval=0.2, heartbeat_timeout=60):
            assert started.wait(10)
            stopped = server._pg_ctl("stop", "-m", "fast", "-w", "-t", "30")
            assert stopped.returncode == 0, stopped.stderr
            release.set()
            assert returned.wait(10)
            time.sleep(0.5)  # the outage goes on for a while after the handler has returned
            server.restart()
            done = tracker.wait(job.id, timeout=20)

    assert done.status is Status.SUCCEEDED
    assert done.result == "recorded"
    assert done.attempt == 1
