"""The runner: retry backoff, results that cannot be stored, outcomes that outlive an outage."""

from __future__ import annotations

import math
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
    assert failed.error_message == "the result could not be stored: not JSON: a set"
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


# -- outcomes no database stores as given ---------------------------------------------------


@pytest.mark.timeout(60)
def test_odd_results_and_progress_end_every_job_and_spare_the_others_of_their_batch(
    tracker: Tracker,
) -> None:
    @tracker.job("surrogate_result", max_attempts=2)
    def surrogate_result(ctx: Context) -> dict[str, str]:
        return {"x": "\ud800"}

    @tracker.job("nul_message", max_attempts=2)
    def nul_message(ctx: Context) -> str:
        ctx.progress(50, message="a\x00b")
        return "done"

    @tracker.job("nul_data", max_attempts=2)
    def nul_data(ctx: Context) -> str:
        ctx.progress(50, label="a\x00b", nested={"k\x00": ["\udcff"]})
        return "done"

    @tracker.job("nan_result", max_attempts=2)
    def nan_result(ctx: Context) -> dict[str, float]:
        return {"score": math.nan}

    @tracker.job("infinite_data", max_attempts=2)
    def infinite_data(ctx: Context) -> str:
        ctx.progress(50, rate=float("1e400"))
        return "unreachable"

    @tracker.job("huge_total", max_attempts=2)
    def huge_total(ctx: Context) -> str:
        ctx.set_total(2**70)
        return "too many"

    @tracker.job("fine")
    def fine(ctx: Context, n: int) -> int:
        ctx.progress(10, f"item {n}")
        return n

    odd = {
        name: tracker.submit(name)
        for name in (
            "surrogate_result",
            "nul_message",
            "nul_data",
            "nan_result",
            "infinite_data",
            "huge_total",
        )
    }
    fines = [fine.submit(n=n) for n in range(24)]
    with tracker.worker(4, poll_interval=0.01, heartbeat_timeout=60):
        ended = {name: tracker.wait(job.id, timeout=15) for name, job in odd.items()}
        done = [tracker.wait(job.id, timeout=15) for job in fines]

    assert [(j.status, j.result, j.attempt) for j in done] == [
        (Status.SUCCEEDED, n, 1) for n in range(24)
    ]
    assert all(job.attempt == 1 for job in ended.values()), "no job may run twice"
    succeeded = {n: j for n, j in ended.items() if j.status is Status.SUCCEEDED}
    assert sorted(succeeded) == ["nul_data", "nul_message", "surrogate_result"]
    assert succeeded["surrogate_result"].result == {"x": "\\ud800"}
    assert succeeded["nul_message"].message == "a\\x00b"
    assert succeeded["nul_data"].progress_data == {
        "label": "a\\x00b",
        "nested": {"k\\x00": ["\\udcff"]},
    }
    reasons = {n: j.error_message for n, j in ended.items() if n not in succeeded}
    assert reasons["nan_result"] == (
        "the result could not be stored: numbers must be finite (no NaN or Infinity)"
    )
    assert "progress data: numbers must be finite" in str(reasons["infinite_data"])
    assert str(reasons["huge_total"]).startswith("the job's outcome could not be stored: ")
    assert {ended[n].status for n in reasons} == {Status.FAILED}


@pytest.mark.timeout(60)
def test_a_retry_whose_progress_the_database_refuses_fails_the_job_instead(
    tracker: Tracker,
) -> None:
    @tracker.job("huge_then_raise", max_attempts=3)
    def huge_then_raise(ctx: Context) -> None:
        ctx.set_total(2**70)
        raise RuntimeError("upstream down")

    job = huge_then_raise.submit()
    with tracker.worker(1, poll_interval=0.01, heartbeat_timeout=60):
        done = tracker.wait(job.id, timeout=15)

    assert done.status is Status.FAILED
    assert done.attempt == 1
    assert str(done.error_message).startswith("the job's outcome could not be stored: ")
