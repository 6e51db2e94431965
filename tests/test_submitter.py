"""Every way a job is created goes through the one ``Submitter``: a payload that is not
storable JSON is refused the same way by each, and nothing is stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import structlog
from celery import Celery

from jobtrail import Context, NewJob, PayloadError, Tracker
from jobtrail.integrations.celery import tracking_of
from tests.apps.celery_app import use_tracker
from tests.clock import FakeClock
from tests.structlog_state import configured_as_before

NOT_STORABLE = {"note": "a\x00b"}  # no database stores a NUL character as given


def creations(tracker: Tracker) -> dict[str, Callable[[], object]]:
    """Each way of creating a job, given the payload that is not storable."""

    @tracker.job("sync")
    def sync(ctx: Context, note: str = "") -> None: ...

    def tracked() -> None:
        with tracker.track("sync", payload=NOT_STORABLE):
            raise AssertionError("the block must not run")

    return {
        "submit": lambda: tracker.submit("sync", NOT_STORABLE),
        "handle": lambda: sync.submit(note=NOT_STORABLE["note"]),
        "submit_many": lambda: tracker.submit_many("sync", [{}, NOT_STORABLE]),
        "add": lambda: tracker.add(NewJob("remote", NOT_STORABLE)),
        "track": tracked,
        "schedule": lambda: tracker.schedule("nightly", "sync", every=60, payload=NOT_STORABLE),
        "on_startup": lambda: tracker.on_startup("sync", NOT_STORABLE),
    }


@pytest.mark.parametrize(
    "way", ["submit", "handle", "submit_many", "add", "track", "schedule", "on_startup"]
)
def test_each_way_of_creating_a_job_refuses_a_payload_that_is_not_storable(
    tracker: Tracker, way: str
) -> None:
    create = creations(tracker)[way]

    with pytest.raises(PayloadError, match="not storable JSON: text must not contain NUL"):
        create()

    assert tracker.list().total_count == 0
    assert tracker.schedules == {}
    assert tracker.startup == []


def test_a_published_celery_task_with_a_payload_that_is_not_storable_is_not_recorded(
    shared_celery: Celery, tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    app = use_tracker(shared_celery, tracker)

    with configured_as_before():
        structlog.reset_defaults()  # jobtrail's lines go through the standard library's loggers
        result = app.send_task("sync_listings", kwargs={"listings": ["a\x00b"], "bad": []})
        assert tracking_of(app).flush(timeout=10)

    assert tracker.list().total_count == 0
    assert result.id in caplog.text
    assert "not storable JSON" in caplog.text


def test_scheduled_and_startup_jobs_take_their_times_from_the_trackers_clock(
    database_url: str,
) -> None:
    clock = FakeClock()
    with Tracker(database_url, clock=clock) as tracker:

        @tracker.job("sync", expire_after=600)
        def sync(ctx: Context) -> None: ...

        tracker.schedule("nightly", "sync", every=3600)
        job = tracker.run_schedule("nightly")

    assert job.created_at == clock()
    assert job.expires_at == clock() + timedelta(seconds=600)


def test_the_runtime_runs_jobs_from_its_parts_without_a_tracker(database_url: str) -> None:
    from jobtrail.heartbeat import Heartbeat
    from jobtrail.kinds import JobKind
    from jobtrail.redaction import Redactor
    from jobtrail.registry import Registry
    from jobtrail.runtime import Runtime
    from jobtrail.settings import configure
    from jobtrail.store import Store
    from jobtrail.submitter import Submitter
    from jobtrail.worker import Worker, WorkerOptions

    settings = configure(None, {"database_url": database_url, "flush_interval": 0.05})
    store = Store(database_url).open()
    registry, redactor = Registry(), Redactor()
    submitter = Submitter(registry, redactor, store.jobs, store.clock)
    runtime = Runtime(
        store, settings, registry, submitter, redactor, Heartbeat(store.runs, store.database)
    )

    def double(ctx: Context, n: int) -> int:
        return 2 * n

    registry.kinds["double"] = JobKind.of("double", double)
    job, created = submitter.submit_or_get("double", {"n": 21})
    assert created
    Worker(runtime, WorkerOptions.of(settings)).run(burst=True)

    done = store.jobs.get(job.id)
    assert (done.status, done.result) == ("succeeded", 42)
    store.close()
