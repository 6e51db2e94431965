"""The Celery integration against a real Redis broker and real Celery workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery, Task, signals
from celery.backends.redis import RedisBackend
from celery.contrib.testing.worker import start_worker

import jobtrail
from jobtrail import Filters, Status
from jobtrail.integrations.celery import ENGINE_LABEL, priority_of, serves_zero_first, tracking_of
from jobtrail.jobs import NewJob
from jobtrail.store.rows import new_row
from jobtrail.store.tables import jobs
from tests.apps.celery_app import use_tracker
from tests.apps.celery_publisher import QUEUE
from tests.servers import RedisServer
from tests.waiting import event_types, until

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def celery_app(shared_celery: Celery, tracker: jobtrail.Tracker) -> Celery:
    return use_tracker(shared_celery, tracker)


@pytest.fixture
def worker(celery_app: Celery) -> Iterator[None]:
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False):
        yield


def test_a_published_task_is_a_queued_job_with_the_task_id(
    celery_app: Celery, tracker: jobtrail.Tracker
) -> None:
    result = celery_app.send_task(
        "sync_listings",
        kwargs={"listings": ["a"], "bad": []},
        headers={"jobtrail_owner": "acme"},
        priority=0,  # served first by Celery's Redis transport
    )
    job = tracker.get(result.id)
    assert job.status is Status.QUEUED
    assert job.kind == "sync_listings"
    assert job.owner == "acme"
    assert job.priority is jobtrail.Priority.URGENT
    assert job.payload == {"args": [], "kwargs": {"listings": ["a"], "bad": []}}
    assert job.labels == {"engine": "celery"}
    assert job.queue == "celery"  # Celery's queue, the one its workers are listed on


def test_a_task_sent_to_a_named_queue_is_a_job_on_that_queue(
    celery_app: Celery, tracker: jobtrail.Tracker, redis_server: RedisServer
) -> None:
    try:
        result = celery_app.send_task(
            "sync_listings", kwargs={"listings": [], "bad": []}, queue="bulk"
        )
        assert tracker.get(result.id).queue == "bulk"
    finally:
        redis.Redis.from_url(redis_server.url()).delete("bulk")


@pytest.mark.usefixtures("worker")
def test_items_and_result_of_a_task_land_in_its_job(
    celery_app: Celery, tracker: jobtrail.Tracker
) -> None:
    result = celery_app.send_task(
        "sync_listings", kwargs={"listings": ["a", "b", "c", "d"], "bad": ["c"]}
    )
    job = tracker.wait(result.id, timeout=30)
    assert job.status is Status.PARTIAL
    assert (job.items_total, job.items_succeeded, job.items_failed) == (4, 3, 1)
    assert job.result == {"listings": 4}
    assert [i.item_id for i in tracker.failed_items(job.id)] == ["c"]
    assert job.attempt == 1
    assert event_types(tracker, job.id)[:2] == ["created", "started"]


@pytest.mark.usefixtures("worker")
def test_celery_update_state_meta_reports_counts_percentage_and_messages(
    celery_app: Celery, tracker: jobtrail.Tracker
) -> None:
    result = celery_app.send_task("convert_pages", kwargs={"pages": 3})
    job = tracker.wait(result.id, timeout=30)
    assert job.status is Status.SUCCEEDED
    assert (job.items_total, job.items_succeeded, job.items_done) == (3, 3, 3)
    assert (job.progress, job.message) == (100.0, "writing")
    assert job.result == 3
    messages = [e.message for e in tracker.events(job.id) if e.type == "progress"]
    assert messages[-1] == "writing"  # the last message always reaches the history


@pytest.mark.usefixtures("worker")
def test_a_failing_task_ends_failed_with_a_redacted_traceback(
    celery_app: Celery, tracker: jobtrail.Tracker
) -> None:
    result = celery_app.send_task("explode", kwargs={"secret": "s3cr3t"})
    job = tracker.wait(result.id, timeout=30)
    assert job.status is Status.FAILED
    assert job.error_message is not None
    assert job.error_message.startswith("ValueError")
    assert "s3cr3t" not in job.error_message
    assert "ValueError" in job.error_details["traceback"]
    assert "s3cr3t" not in job.error_details["traceback"]


@pytest.mark.usefixtures("worker")
def test_a_retried_task_goes_back_to_queued_then_succeeds_on_the_same_job(
    celery_app: Celery, tracker: jobtrail.Tracker
) -> None:
    result = celery_app.send_task("flaky")
    job = tracker.wait(result.id, timeout=30)
    assert job.status is Status.SUCCEEDED
    assert job.result == "ok"
    assert job.attempt == 2
    types = event_types(tracker, job.id)
    assert types.count("retrying") == 1
    assert types.count("started") == 2
    assert len(tracker.list(kind="flaky").jobs) == 1


@pytest.mark.usefixtures("worker")
def test_cancelling_a_running_task_from_jobtrail_stops_it_at_its_next_check(
    celery_app: Celery, tracker: jobtrail.Tracker, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    result = celery_app.send_task("wait_forever", kwargs={"started_file": str(started)})
    until(started.exists, 30, what="the task to start")
    tracker.cancel(result.id, actor="ops")
    job = tracker.wait(result.id, timeout=30)
    assert job.status is Status.CANCELLED
    assert "cancel_requested" in event_types(tracker, job.id)


def test_a_task_cancelled_while_queued_never_runs(
    celery_app: Celery, tracker: jobtrail.Tracker, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    result = celery_app.send_task("wait_forever", kwargs={"started_file": str(started)})
    assert tracker.cancel(result.id).status is Status.CANCELLED
    worker = start_worker(celery_app, pool="threads", concurrency=1, perform_ping_check=False)
    with celery_outcomes() as outcomes, worker:
        until(lambda: result.id in outcomes, 30, what="the worker to take the task")
    # Dropped on receipt if the worker heard the revoke, else when it found the job ended.
    assert outcomes[result.id] in (["REVOKED"], ["IGNORED"])
    assert not started.exists()
    assert tracker.get(result.id).status is Status.CANCELLED


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("task", ["convert_slowly", "convert_slowly_retrying"])
def test_a_task_reporting_only_through_update_state_stops_soon_after_a_cancel_from_elsewhere(
    celery_app: Celery, tracker: jobtrail.Tracker, tmp_path: Path, task: str
) -> None:
    started = tmp_path / "started"
    pages = 600  # 30 s of work, reported only with update_state(meta={"current", "total"})
    kwargs = {"pages": pages, "started_file": str(started)}
    with celery_outcomes() as outcomes:
        result = celery_app.send_task(task, kwargs=kwargs)
        until(started.exists, 30, what="the task to start")
        # As `jobtrail serve` does: a tracker that never imported the Celery app (no revoke).
        with jobtrail.Tracker(tracker.settings.database_url) as elsewhere:
            assert elsewhere.cancel(result.id, actor="ops").cancel_requested
            asked = time.monotonic()
            job = elsewhere.wait(result.id, timeout=10)
            stopped_after = time.monotonic() - asked
        # Not SUCCESS, nor FAILURE with a traceback; a retry of the cancel is discarded.
        until(lambda: "IGNORED" in outcomes.get(result.id, []), 10, what="Celery to drop it")
    assert job.status is Status.CANCELLED
    assert stopped_after < 3
    assert 0 < (job.items_done or 0) < pages
    assert event_types(tracker, job.id).count("started") == 1


def test_a_task_cancelled_while_queued_from_elsewhere_is_discarded_not_succeeded(
    celery_app: Celery, tracker: jobtrail.Tracker, redis_server: RedisServer, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    result = celery_app.send_task("wait_forever", kwargs={"started_file": str(started)})
    assert tracking_of(celery_app).flush(timeout=30)
    with jobtrail.Tracker(tracker.settings.database_url) as elsewhere:  # sends no revoke
        assert elsewhere.cancel(result.id).status is Status.CANCELLED
    task = celery_app.tasks["wait_forever"]
    with celery_outcomes() as outcomes, storing_results(task, redis_server.url()) as backend:
        with start_worker(celery_app, pool="threads", concurrency=1, perform_ping_check=False):
            until(lambda: result.id in outcomes, 30, what="the worker to take the task")
        assert backend.get_task_meta(result.id)["status"] == "REVOKED"
    assert outcomes[result.id] == ["IGNORED"]
    assert not started.exists()
    assert "started" not in event_types(tracker, result.id)
    assert tracker.get(result.id).status is Status.CANCELLED


@contextmanager
def celery_outcomes() -> Iterator[dict[str, list[str]]]:
    """The Celery states the runs of each task in this process ended in (``task_postrun``),
    or ``REVOKED`` for a task a worker here dropped as revoked, by task id."""
    outcomes: dict[str, list[str]] = {}

    def record(task_id: str, state: str, **kw: Any) -> None:
        outcomes.setdefault(task_id, []).append(state)

    def revoked(request: Any, **kw: Any) -> None:
        outcomes.setdefault(request.id, []).append("REVOKED")

    signals.task_postrun.connect(record, weak=False)
    signals.task_revoked.connect(revoked, weak=False)
    try:
        yield outcomes
    finally:
        signals.task_postrun.disconnect(record)
        signals.task_revoked.disconnect(revoked)


@contextmanager
def storing_results(task: Task[Any, Any], redis_url: str) -> Iterator[RedisBackend]:
    """Give ``task`` a Redis result backend that keeps its errors and revocations (the test
    app has none), for as long as the block runs."""
    backend = RedisBackend(app=task.app, url=redis_url)
    task.backend = backend
    task.store_errors_even_if_ignored = True  # the test app ignores results
    try:
        yield backend
    finally:
        task.backend = None  # type: ignore[assignment]  # Celery's setter: the app's again
        del task.store_errors_even_if_ignored
        backend.client.connection_pool.disconnect()


def _pending(app: Celery) -> int:
    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        return int(channel.client.llen("celery"))


@pytest.mark.usefixtures("worker")
def test_untracked_tasks_are_not_mirrored(celery_app: Celery, tracker: jobtrail.Tracker) -> None:
    result = celery_app.send_task("untracked")
    until(lambda: not _pending(celery_app), 30, what="the task to be taken")
    with pytest.raises(jobtrail.JobNotFound):
        tracker.get(result.id)


@pytest.mark.timeout(120)
def test_a_worker_process_killed_mid_task_is_redelivered_and_counted_once(
    celery_app: Celery, tracker: jobtrail.Tracker, redis_server: RedisServer, tmp_path: Path
) -> None:
    marker = tmp_path / "died"
    result = celery_app.send_task("die_once", kwargs={"marker": str(marker)})
    env = os.environ | {
        "CELERY_TEST_BROKER": redis_server.url(),
        "JOBTRAIL_DATABASE_URL": tracker.settings.database_url,
        "JOBTRAIL_FLUSH_INTERVAL": "0.05",
    }
    command = [str(Path(sys.executable).parent / "celery"), "-A", "tests.apps.celery_app"]
    command += ["worker", "--pool", "prefork", "--concurrency", "1", "--loglevel", "WARNING"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        job = tracker.wait(result.id, timeout=90)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert marker.exists()
    assert job.status is Status.SUCCEEDED
    assert job.result != int(marker.read_text())  # the second child ran it to the end
    assert job.attempt == 2
    types = event_types(tracker, job.id)
    assert types.count("rescued") == 1
    assert types.count("succeeded") == 1


@pytest.mark.usefixtures("worker")
def test_a_task_moves_through_its_stages_like_a_handler(
    celery_app: Celery, tracker: jobtrail.Tracker
) -> None:
    result = celery_app.send_task("staged_sync", kwargs={"media": ["a", "b", "c", "d"]})
    job = tracker.wait(result.id, timeout=30)

    assert (job.status, job.progress, job.stage) == (Status.SUCCEEDED, 100.0, "done")
    stages = [e.data for e in tracker.events(job.id) if e.type == "stage"]
    assert [(s["stage"], s["start"], s["end"]) for s in stages] == [
        ("fetching", 0.0, 10.0),
        ("found", 20.0, 90.0),
        ("done", 100.0, 100.0),
    ]


@contextmanager
def publishing_unseen(celery_app: Celery) -> Iterator[None]:
    """Publish without jobtrail seeing it, as from a service without the integration (or as
    a publisher whose record is still on its way when the worker takes the task)."""
    tracking = tracking_of(celery_app)
    signals.before_task_publish.disconnect(tracking.on_publish)
    try:
        yield
    finally:
        signals.before_task_publish.connect(tracking.on_publish, weak=False)


@pytest.mark.usefixtures("worker")
def test_a_task_started_before_its_record_was_written_ends_with_one_complete_record(
    celery_app: Celery, tracker: jobtrail.Tracker
) -> None:
    kwargs = {"listings": ["a", "b"], "bad": ["b"]}
    with publishing_unseen(celery_app):
        result = celery_app.send_task(
            "sync_listings",
            kwargs=kwargs,
            headers={"jobtrail_owner": "acme", "jobtrail_trigger": "message"},
            priority=0,
        )
    # No record until the worker takes the task: it creates one, running, on sight.
    until(lambda: tracker.list(owner="acme").total_count, 30, what="the worker to start it")
    job = tracker.wait(result.id, timeout=30)
    # The publisher's write arrives late: it finds the record and adds nothing.
    tracking = tracking_of(celery_app)
    headers = {"id": result.id, "jobtrail_owner": "acme", "jobtrail_trigger": "message"}
    tracking.on_publish("sync_listings", headers, ((), kwargs, {}), properties={"priority": 0})
    assert tracking.flush(timeout=30)

    assert tracker.get(result.id) == job
    assert (job.status, job.owner, job.trigger) == (Status.PARTIAL, "acme", "message")
    assert job.queue == "celery"
    assert job.priority is jobtrail.Priority.URGENT
    assert job.payload == {"args": [], "kwargs": kwargs}
    assert (job.attempt, job.items_succeeded, job.items_failed) == (1, 1, 1)
    types = event_types(tracker, job.id)
    assert (types[0], types[-1]) == ("created", "partial")
    assert (types.count("created"), types.count("started")) == (1, 1)
    assert tracker.list(owner="acme", kind="sync_listings").total_count == 1


@pytest.mark.usefixtures("worker")
def test_tasks_published_while_the_worker_runs_get_one_record_and_one_history_each(
    celery_app: Celery, tracker: jobtrail.Tracker
) -> None:
    # Whichever comes first, the publisher's write or the worker's start, each task ends
    # with one record: created, started and succeeded once.
    ids = [
        celery_app.send_task("sync_listings", kwargs={"listings": [], "bad": []}).id
        for _ in range(40)
    ]
    jobs = [tracker.wait(task_id, timeout=60) for task_id in ids]
    assert {job.status for job in jobs} == {Status.SUCCEEDED}
    for job in jobs:
        events = tracker.events(job.id)
        assert [e.type for e in events] == ["created", "started", "succeeded"]
        assert events[1].message is not None
        assert events[1].message.startswith(f"attempt 1 on {job.worker}")
    assert tracker.list(kind="sync_listings").total_count == 40


def test_flush_makes_the_published_records_visible_to_other_processes(
    celery_app: Celery, tracker: jobtrail.Tracker
) -> None:
    ids = {
        celery_app.send_task("sync_listings", kwargs={"listings": [str(n)], "bad": []}).id
        for n in range(30)
    }
    assert tracking_of(celery_app).flush(timeout=30)
    with jobtrail.Tracker(tracker.settings.database_url) as other:  # reads only the store
        found = other.list(kind="sync_listings", status="queued", limit=100).jobs
    assert {job.id for job in found} == ids


@pytest.mark.parametrize("read", ["get", "get_by_key", "list", "changes", "bulk"])
def test_every_read_in_the_publishing_process_sees_a_task_just_published(
    celery_app: Celery, tracker: jobtrail.Tracker, read: str
) -> None:
    since = tracker.now() - timedelta(seconds=1)
    task_id = celery_app.send_task("sync_listings", kwargs={"listings": [], "bad": []}).id
    # No flush: the store lands this process's deferred records before it reads.
    reads: dict[str, Callable[[], Sequence[jobtrail.Job]]] = {
        "get": lambda: [tracker.get(task_id)],
        "get_by_key": lambda: [tracker.get_by_key(f"celery:{task_id}")],
        "list": lambda: tracker.list(kind="sync_listings").jobs,
        "changes": lambda: tracker.ops.changes(since, Filters()),
        "bulk": lambda: [tracker.get(i) for i in tracker.bulk("cancel", where=Filters()).done],
    }

    assert [job.id for job in reads[read]()] == [task_id]


def test_records_published_just_before_the_process_exits_are_written(
    tracker: jobtrail.Tracker, redis_server: RedisServer
) -> None:
    env = os.environ | {
        "CELERY_TEST_BROKER": redis_server.url(),
        "JOBTRAIL_DATABASE_URL": tracker.settings.database_url,
        "PUBLISH_COUNT": "300",
    }
    command = [sys.executable, "-m", "tests.apps.celery_publisher"]
    try:
        subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=90)
    finally:
        redis.Redis.from_url(redis_server.url()).delete(QUEUE)
    page = tracker.list(kind="exit_probe", owner="acme", limit=1000)
    assert page.total_count == 300
    assert {job.status for job in page.jobs} == {Status.QUEUED}
    assert sorted(job.payload["kwargs"]["n"] for job in page.jobs) == list(range(300))
    assert all(event_types(tracker, job.id) == ["created"] for job in page.jobs[:20])


def test_a_worker_inserting_a_record_the_publisher_is_inserting_yields_to_it(
    tracker: jobtrail.Tracker, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's write lock makes the two inserts take turns; nothing races")
    database = tracker.store.database
    new = NewJob(id="race-1", key="celery:race-1", kind="sync_listings", labels=ENGINE_LABEL)
    started: list[jobtrail.Job | None] = []
    with database.write() as conn:  # the publisher's insert, not committed yet
        conn.execute(jobs.insert(), [new_row(new, tracker.now())])
        worker = threading.Thread(
            target=lambda: started.append(tracker.store.celery.start(new, "lease", "w"))
        )
        worker.start()
        until(lambda: _waiting_on_a_lock(conn), 30, what="the worker's insert to wait")
    worker.join(timeout=30)
    assert started == [None]  # it yields; the integration then takes the job over
    assert tracker.get("race-1").status is Status.QUEUED


def _waiting_on_a_lock(conn: Any) -> bool:
    with conn.engine.connect() as other:
        waiting = other.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).scalar_one()
    return bool(waiting)


def test_celery_priorities_map_by_what_the_broker_serves_first() -> None:
    # RabbitMQ serves 9 first; Celery's Redis transport serves 0 first.
    assert [priority_of(n) for n in (9, 6, 3, 0)] == [
        jobtrail.Priority.URGENT,
        jobtrail.Priority.HIGH,
        jobtrail.Priority.NORMAL,
        jobtrail.Priority.LOW,
    ]
    assert [priority_of(n, zero_first=True) for n in (0, 3, 6, 9)] == [
        jobtrail.Priority.URGENT,
        jobtrail.Priority.HIGH,
        jobtrail.Priority.NORMAL,
        jobtrail.Priority.LOW,
    ]
    assert priority_of(None, zero_first=True) is jobtrail.Priority.NORMAL
    assert serves_zero_first(Celery(broker="redis://127.0.0.1:6379/0"))
    assert not serves_zero_first(Celery(broker="amqp://guest@127.0.0.1//"))
