"""The registry of live workers and ``waiting``: jobs no live worker consumes wait with the
reason, handlers wait on purpose with ``ctx.wait``; through the API, REST, CLI and dashboard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from jobtrail import Context, Status, Tracker
from jobtrail.jobs import NewJob
from jobtrail.store.tables import workers
from jobtrail.web.app import create_app
from jobtrail.worker import Worker
from tests.rows import force
from tests.waiting import event_types, until
from tests.web.client import TESTCLIENT_WARNING, open_client

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

JOBTRAIL = str(Path(sys.executable).parent / "jobtrail")

pytestmark = TESTCLIENT_WARNING


def worker(tracker: Tracker, queues: list[str] | None = None, concurrency: int = 1) -> Worker:
    """A worker (of ``queues``; None: every queue) polling every 10 ms, beating every 50 ms."""
    return tracker.worker(concurrency, queues=queues, poll_interval=0.01, heartbeat_interval=0.05)


@pytest.fixture
def gpu(tracker: Tracker) -> Tracker:
    """The tracker with a kind on queue ``gpu`` and one on the default queue."""

    @tracker.job("render", queue="gpu")
    def render(ctx: Context) -> str:
        return "rendered"

    @tracker.job("mail")
    def mail(ctx: Context) -> None:
        pass

    return tracker


# -- the registry -------------------------------------------------------------------------


def test_a_running_worker_is_listed_with_its_process_queues_and_kinds_until_it_stops(
    gpu: Tracker,
) -> None:
    with worker(gpu, ["default"], concurrency=3):
        [found] = gpu.workers()
        assert found.engine == "jobtrail"
        assert (found.host, found.pid) == (os.uname().nodename, os.getpid())
        assert found.queues == ["default"]
        assert found.kinds == ["mail", "render"]
        assert found.concurrency == 3
        assert found.running == 0
        assert found.started_at <= found.last_seen_at
        first_seen = found.last_seen_at
        until(lambda: gpu.workers()[0].last_seen_at > first_seen, what="a heartbeat")
    assert gpu.workers() == []


def test_a_worker_counts_the_jobs_it_holds_at_its_heartbeat(tracker: Tracker) -> None:
    release = threading.Event()

    @tracker.job("hold")
    def hold(ctx: Context) -> None:
        release.wait(10)

    hold.submit()
    with worker(tracker):
        until(lambda: tracker.workers()[0].running == 1, what="one job held")
        release.set()
        until(lambda: tracker.workers()[0].running == 0, what="no job held")


def test_a_worker_whose_heartbeat_is_older_than_the_timeout_is_not_live_and_is_forgotten(
    gpu: Tracker,
) -> None:
    with worker(gpu):
        assert len(gpu.workers()) == 1
    gpu.store.workers.announce(
        worker(gpu, ["gpu"]).presence.info()
    )  # a process that will never beat again
    force(gpu, table=workers, last_seen_at=gpu.now() - timedelta(hours=1))  # as if it died
    assert gpu.workers() == []
    gpu.ops.watch_queues()
    with gpu.store.database.engine.connect() as conn:
        assert conn.execute(workers.select()).all() == []


def test_several_workers_in_one_process_are_listed_apart(gpu: Tracker) -> None:
    with worker(gpu, ["gpu"]), worker(gpu, ["default"]):
        listed = gpu.workers()
        assert sorted(tuple(w.queues or ()) for w in listed) == [("default",), ("gpu",)]
        assert len({w.id for w in listed}) == 2


# -- waiting for a worker ---------------------------------------------------------------------


def test_a_queued_job_no_live_worker_consumes_waits_with_the_reason_and_runs_when_one_starts(
    gpu: Tracker,
) -> None:
    job = gpu.submit("render")
    with worker(gpu, ["default"]):
        until(lambda: gpu.get(job.id).status is Status.WAITING, what="the job to wait")
        assert gpu.get(job.id).wait_reason == "no worker consumes queue 'gpu'"
        with worker(gpu, ["gpu"]):
            done = gpu.wait(job.id, timeout=10)
    assert done.status is Status.SUCCEEDED
    assert done.wait_reason is None
    assert event_types(gpu, job.id) == [
        "created",
        "waiting",
        "resumed",
        "started",
        "succeeded",
    ]


def test_a_worker_consuming_every_queue_counts_for_every_queue(gpu: Tracker) -> None:
    gated = threading.Event()

    @gpu.job("gated", queue="rare")
    def gated_job(ctx: Context) -> None:
        gated.wait(10)

    job = gated_job.submit(run_after=gpu.now() + timedelta(hours=1))
    with worker(gpu):
        first_seen = gpu.workers()[0].last_seen_at
        until(lambda: gpu.workers()[0].last_seen_at > first_seen, what="a heartbeat")
        assert gpu.ops.watch_queues().parked == 0
        assert gpu.get(job.id).status is Status.QUEUED


def test_the_watch_releases_waiting_jobs_as_soon_as_a_consuming_worker_is_live(
    gpu: Tracker,
) -> None:
    job = gpu.submit("render", run_after=gpu.now() + timedelta(hours=1))
    with worker(gpu, ["default"]):  # its start parks the jobs of queues nobody consumes
        assert gpu.get(job.id).status is Status.WAITING
        with worker(gpu, ["gpu"]):  # its start releases the queue's jobs before it claims
            assert gpu.get(job.id).status is Status.QUEUED
            assert gpu.get(job.id).wait_reason is None


def test_external_jobs_and_celery_workers_never_make_a_job_wait_or_run(gpu: Tracker) -> None:
    external, _ = gpu.add(NewJob("ocr", queue="gpu"))
    job = gpu.submit("render")
    celery = worker(gpu, ["gpu"]).presence
    celery.engine = "celery"
    celery.announce()
    with worker(gpu, ["default"]):
        until(lambda: gpu.get(job.id).status is Status.WAITING, what="the job to wait")
    assert gpu.get(external.id).status is Status.QUEUED


def test_serve_without_a_worker_consumes_nothing_and_shows_queued_jobs_waiting(
    database_url: str,
) -> None:
    with Tracker(database_url, heartbeat_interval=0.05) as tracker:

        @tracker.job("mail")
        def mail(ctx: Context) -> None:
            pass

        job = mail.submit()
        with open_client(create_app(tracker, run_worker=False, dashboard=False)):
            waiting = until(lambda: tracker.get(job.id).status is Status.WAITING, what="wait")
            assert waiting
            assert tracker.workers() == []
            assert tracker.get(job.id).wait_reason == "no worker consumes queue 'default'"


def test_a_celery_worker_of_an_installed_app_is_listed_until_it_stops(
    shared_celery: Any, database_url: str
) -> None:
    from celery.contrib.testing.worker import start_worker

    from tests.apps.celery_app import use_tracker

    with Tracker(database_url, heartbeat_interval=0.05) as tracker:
        app = use_tracker(shared_celery, tracker)
        with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False):
            [found] = until(tracker.workers, what="the Celery worker")
            assert found.engine == "celery"
            assert found.queues == ["celery"]
            assert found.concurrency == 2
            assert "sync_listings" in found.kinds
        # The test worker stops cold (no ``worker_shutdown``): its presence notices.
        until(lambda: tracker.workers() == [], what="the stopped worker to be forgotten")


# -- waiting on purpose -------------------------------------------------------------------


def test_a_handler_that_waits_shows_waiting_with_its_reason_then_runs_again_when_it_reports(
    tracker: Tracker,
) -> None:
    handed, back = threading.Event(), threading.Event()

    @tracker.job("ocr")
    def ocr(ctx: Context) -> str:
        ctx.progress(10, "uploading")
        ctx.wait("handed to the remote OCR worker")
        handed.set()
        back.wait(10)
        ctx.check()  # checking is not reporting: still waiting
        ctx.progress(80, "remote worker done")
        return "text"

    job = ocr.submit()
    with worker(tracker):
        assert handed.wait(10)
        waiting = tracker.get(job.id)
        assert waiting.status is Status.WAITING
        assert waiting.wait_reason == "handed to the remote OCR worker"
        assert waiting.progress == 10
        back.set()
        done = tracker.wait(job.id, timeout=10)
    assert done.status is Status.SUCCEEDED
    assert done.wait_reason is None
    assert event_types(tracker, job.id) == [
        "created",
        "started",
        "progress",
        "waiting",
        "resumed",
        "progress",
        "succeeded",
    ]


def test_a_handler_may_return_while_it_waits_and_its_job_still_succeeds(tracker: Tracker) -> None:
    @tracker.job("fire_and_wait")
    def fire_and_wait(ctx: Context) -> None:
        ctx.wait("sent")
        ctx.wait("still sent, later")

    job = fire_and_wait.submit()
    with worker(tracker):
        done = tracker.wait(job.id, timeout=10)
    assert done.status is Status.SUCCEEDED
    waits = [e.message for e in tracker.events(job.id) if e.type == "waiting"]
    assert waits == ["sent", "still sent, later"]


def test_a_waiting_handler_whose_worker_died_is_rescued(tracker: Tracker) -> None:
    @tracker.job("lost", max_attempts=2)
    def lost(ctx: Context) -> None:
        pass

    job = lost.submit()
    force(
        tracker,
        job.id,
        status="waiting",
        wait_reason="remote",
        lease="gone",
        attempt=1,
        heartbeat_at=tracker.now() - timedelta(hours=1),
    )
    rescued = tracker.store.expiry.rescue(heartbeat_timeout=60)
    assert [r.id for r in rescued] == [job.id]
    again = tracker.get(job.id)
    assert (again.status, again.wait_reason) == (Status.QUEUED, None)


# -- REST, CLI, dashboard ---------------------------------------------------------------------


@pytest.fixture
def client(gpu: Tracker) -> Iterator[TestClient]:
    with open_client(create_app(gpu, run_worker=False)) as client:
        yield client


def test_get_workers_lists_live_workers_for_an_admin_token(
    gpu: Tracker, client: TestClient
) -> None:
    admin = {"Authorization": f"Bearer {gpu.ops.create_token('admin')}"}
    with worker(gpu, ["gpu"], concurrency=2):
        answer = client.get("/api/v1/workers", headers=admin)
    assert answer.status_code == 200
    [listed] = answer.json()
    assert listed["engine"] == "jobtrail"
    assert listed["queues"] == ["gpu"]
    assert listed["concurrency"] == 2
    assert listed["host"] == os.uname().nodename


def test_get_workers_is_refused_with_403_to_an_owner_token(
    gpu: Tracker, client: TestClient
) -> None:
    owner = {"Authorization": f"Bearer {gpu.ops.create_token('alice', 'A')}"}
    answer = client.get("/api/v1/workers", headers=owner)
    assert answer.status_code == 403
    assert "admin" in answer.json()["detail"]


def test_get_workers_is_documented_in_openapi(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/workers"]["get"]
    assert {"200", "401", "403"} <= set(operation["responses"])


def test_the_workers_page_lists_workers_for_admins_only(gpu: Tracker) -> None:
    with open_client(create_app(gpu, run_worker=False, no_auth=True)) as client:
        with worker(gpu, ["gpu"]):
            page = client.get("/workers")
        nav = client.get("/").text
    assert page.status_code == 200
    assert "gpu" in page.text
    assert f"{os.uname().nodename}:{os.getpid()}" in page.text
    assert 'href="/workers"' in nav


def test_jobtrail_workers_prints_live_workers_as_a_table_and_as_json(
    gpu: Tracker, database_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTRAIL_")}
    env |= {"JOBTRAIL_DATABASE_URL": database_url, "COLUMNS": "200"}

    def run(*args: str) -> str:
        done = subprocess.run(
            [JOBTRAIL, "workers", *args], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout

    assert run().strip() == "no live worker"
    with worker(gpu, ["gpu", "default"], concurrency=2):
        table = run()
        [listed] = json.loads(run("--json"))
    assert "default, gpu" in table
    assert "0/2" in table
    assert listed["queues"] == ["default", "gpu"]
    assert listed["pid"] == os.getpid()
