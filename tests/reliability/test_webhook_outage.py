"""PostgreSQL restarted while a worker's courier delivers webhooks: nothing is lost, and each
job's events still arrive in order (a repeat carries the same webhook-id)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobtrail import Context, Tracker
from tests.servers import PostgresServer, require, start_postgres
from tests.webhook_receiver import Received, serving

pytestmark = pytest.mark.postgres

ORDER = ["job.created", "job.started", "job.stage", "job.stage", "job.stage", "job.succeeded"]


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own: restarting the shared one would disturb other tests."""
    server = require("PostgreSQL", start_postgres())
    try:
        yield server
    finally:
        server.stop()


def once_each(got: list[Received], job_id: str) -> list[str]:
    """The job's deliveries in arrival order, a repeated webhook-id counted once."""
    seen: set[str] = set()
    types = []
    for received in got:
        if received.job_id == job_id and received.id not in seen:
            seen.add(received.id)
            types.append(received.type)
    return types


def test_postgresql_restarted_mid_delivery_loses_nothing_and_keeps_each_jobs_order(
    private_postgres: PostgresServer,
) -> None:
    url = private_postgres.create_database("hooks")
    with (
        serving() as receiver,
        Tracker(url, webhook_allow_private=True, webhook_poll_interval=0.1) as tracker,
    ):
        _, secret = tracker.webhooks.subscribe(receiver.url)
        receiver.secrets.append(secret)

        @tracker.job("staged", max_attempts=3)
        def staged(ctx: Context) -> None:
            for n in range(3):
                ctx.stage(f"s{n}")

        jobs = [staged.submit().id for _ in range(30)]
        with tracker.worker(concurrency=2):
            assert receiver.wait_for(lambda got: len(got) >= 6, timeout=20)
            before = len(receiver.accepted())
            private_postgres.restart()
            assert receiver.wait_for(lambda got: _all_done(got, jobs), timeout=60)

    got = receiver.accepted()
    assert before < len(jobs) * len(ORDER)  # the restart came while deliveries were due
    assert receiver.unverified == 0
    for job_id in jobs:
        types = once_each(got, job_id)
        # A job the restart interrupted may have run twice: its events are announced as they
        # happened, in order.
        assert types[0] == "job.created"
        assert types[-1] == "job.succeeded"
        assert types in (ORDER, _rerun(types)), (job_id, types)


def _all_done(got: list[Received], jobs: list[str]) -> bool:
    return all(any(r.job_id == j and r.type == "job.succeeded" for r in got) for j in jobs)


def _rerun(types: list[str]) -> list[str]:
    """``types`` if it is the order of a job that was interrupted and run again, else []."""
    again = len(types) > len(ORDER) and types[-(len(ORDER) - 1) :] == ORDER[1:]
    return types if again else []
