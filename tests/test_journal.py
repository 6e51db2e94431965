"""The journal: one structured log line per state change of a job, on real runs and real stores,
INFO for the changes and DEBUG for progress, which stays quiet until structlog is configured."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from jobtrail import Cancelled, Context, Status, Tracker
from jobtrail.jobs import NewJob
from jobtrail.logs import configure_logging, logger
from tests.rows import force
from tests.structlog_state import configured_as_before
from tests.waiting import until

Line = MutableMapping[str, Any]


@pytest.fixture
def logs() -> Iterator[list[Line]]:
    """Every structlog line written while the test runs, DEBUG included (structlog's own
    capture, as an application that configured structlog to show everything)."""
    with configured_as_before():
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
        with capture_logs() as captured:
            yield captured


def changes(logs: list[Line], job_id: str) -> list[str]:
    """The states one job's state-change lines name, in order."""
    return [line["state"] for line in logs if line.get("job_id") == job_id and "state" in line]


def line(logs: list[Line], job_id: str, state: str) -> Line:
    """The one line of ``state`` for ``job_id``."""
    found = [x for x in logs if x.get("job_id") == job_id and x.get("state") == state]
    assert len(found) == 1, found
    return found[0]


def run(tracker: Tracker, job_id: str, **options: Any) -> None:
    """Run a worker until the job ended."""
    with tracker.worker(1, poll_interval=0.01, **options):
        tracker.wait(job_id, timeout=20)


def test_a_job_run_by_a_worker_logs_created_started_and_succeeded_with_who_and_how_long(
    tracker: Tracker, logs: list[Line]
) -> None:
    @tracker.job("sync")
    def sync(ctx: Context, account: str) -> str:
        return account

    job = sync.submit(account="A1", owner="acme")
    run(tracker, job.id)

    assert changes(logs, job.id) == ["created", "started", "succeeded"]
    done = line(logs, job.id, "succeeded")
    assert done["event"] == "job succeeded"
    assert done["log_level"] == "info"
    assert (done["kind"], done["owner"], done["attempt"]) == ("sync", "acme", 1)
    assert done["duration"] >= 0
    created = line(logs, job.id, "created")
    assert (created["kind"], created["owner"], created["attempt"]) == ("sync", "acme", 0)


def test_a_retried_job_logs_each_attempt_and_why_it_is_retried(
    tracker: Tracker, logs: list[Line]
) -> None:
    @tracker.job("flaky", max_attempts=2, retry_backoff=0.01)
    def flaky(ctx: Context) -> None:
        if ctx.attempt == 1:
            raise ConnectionError("upstream went away")

    job = flaky.submit()
    run(tracker, job.id)

    assert changes(logs, job.id) == ["created", "started", "retrying", "started", "succeeded"]
    retrying = line(logs, job.id, "retrying")
    assert retrying["attempt"] == 1
    assert "ConnectionError: upstream went away" in retrying["reason"]
    assert retrying["delay"] > 0
    assert [x["attempt"] for x in logs if x.get("state") == "started"] == [1, 2]


def test_partial_and_failed_outcomes_are_logged_with_their_error(
    tracker: Tracker, logs: list[Line]
) -> None:
    @tracker.job("items")
    def items(ctx: Context, bad: list[int]) -> None:
        for n in ctx.items(range(3)):
            with ctx.item(n):
                if n in bad:
                    raise ValueError(f"item {n} is bad")

    @tracker.job("boom")
    def boom(ctx: Context) -> None:
        raise RuntimeError("password=hunter2 refused")

    partial, failed = items.submit(bad=[1]), boom.submit()
    run(tracker, partial.id)
    run(tracker, failed.id)

    assert changes(logs, partial.id)[-1] == "partial"
    assert line(logs, partial.id, "partial")["error"] == "1 of 3 items failed"
    error = line(logs, failed.id, "failed")["error"]
    assert error.startswith("RuntimeError")
    assert "hunter2" not in error  # the journal logs what the store keeps: redacted


def test_cancels_are_logged_before_a_job_runs_and_at_a_running_jobs_checkpoint(
    tracker: Tracker, logs: list[Line]
) -> None:
    started = threading.Event()

    @tracker.job("wait")
    def wait(ctx: Context) -> None:
        started.set()
        for _ in range(1000):  # a checkpoint every 10 ms: the cancel stops it at one
            ctx.check()
            time.sleep(0.01)

    queued = wait.submit(run_after=datetime.now(UTC) + timedelta(hours=1))
    tracker.cancel(queued.id)
    running = wait.submit()
    with tracker.worker(1, poll_interval=0.01):
        assert started.wait(10)
        tracker.cancel(running.id)
        tracker.wait(running.id, timeout=10)

    assert changes(logs, queued.id) == ["created", "cancelled"]
    assert changes(logs, running.id) == ["created", "started", "cancelled"]
    assert line(logs, running.id, "cancelled")["duration"] > 0


def test_a_lost_job_is_logged_rescued_then_failed_on_its_last_attempt(
    tracker: Tracker, logs: list[Line]
) -> None:
    @tracker.job("orphan", max_attempts=2)
    def orphan(ctx: Context) -> None:
        raise RuntimeError("still broken")

    job = orphan.submit()
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    lost: dict[str, Any] = {
        "status": "running",
        "lease": "lost",
        "worker": "ghost:1:t",
        "heartbeat_at": an_hour_ago,
    }
    force(tracker, job.id, attempt=1, **lost)
    run(tracker, job.id, heartbeat_interval=0.1, heartbeat_timeout=1.0)

    assert changes(logs, job.id) == ["created", "rescued", "started", "failed"]
    rescued = line(logs, job.id, "rescued")
    assert (rescued["attempt"], rescued["worker"]) == (1, "ghost:1:t")
    assert rescued["reason"] == "heartbeat lost"


def test_work_tracked_in_place_logs_its_start_and_its_failure(
    tracker: Tracker, logs: list[Line]
) -> None:
    with pytest.raises(Cancelled), tracker.track("inline", owner="ops") as ctx:
        raise Cancelled(ctx.job_id, "stopped by hand")

    assert changes(logs, ctx.job_id) == ["created", "started", "cancelled"]
    assert line(logs, ctx.job_id, "cancelled")["error"] == "stopped by hand"


def test_an_external_job_logs_the_states_it_reports_and_a_repeated_key_logs_nothing(
    tracker: Tracker, logs: list[Line]
) -> None:
    job, _ = tracker.add(NewJob("scrape", key="msg-1", owner="tracer"))
    again, created = tracker.add(NewJob("scrape", key="msg-1", owner="tracer"))
    tracker.report(job.id, {"message": "fetching"}, Status.RUNNING)
    tracker.report(job.id, {"message": "waiting for the remote"}, Status.WAITING)
    tracker.report(job.id, {"error_message": "not_found"}, Status.FAILED)

    assert (again.id, created) == (job.id, False)
    assert changes(logs, job.id) == ["created", "started", "waiting", "failed"]
    assert line(logs, job.id, "failed")["error"] == "not_found"
    assert line(logs, job.id, "failed")["duration"] is not None


def test_a_handler_that_waits_logs_waiting_then_resumed_at_its_next_report(
    tracker: Tracker, logs: list[Line]
) -> None:
    with tracker.track("ocr") as ctx:
        ctx.wait("handed to the OCR cluster")
        ctx.progress(message="the OCR cluster answered")
        ctx.flush()

    assert changes(logs, ctx.job_id) == ["created", "started", "waiting", "resumed", "succeeded"]
    assert line(logs, ctx.job_id, "waiting")["reason"] == "handed to the OCR cluster"


def test_a_queued_job_past_its_expiry_is_logged_expired(tracker: Tracker, logs: list[Line]) -> None:
    @tracker.job("trace", expire_after=0.05)
    def trace(ctx: Context) -> None:
        pass

    job = trace.submit()
    until(lambda: tracker.ops.expire(), timeout=10, what="the job to expire")

    assert changes(logs, job.id) == ["created", "expired"]
    assert line(logs, job.id, "expired")["error"] == "expired"


def test_progress_is_logged_at_debug_once_per_write_not_per_call(
    database_url: str, logs: list[Line]
) -> None:
    with Tracker(database_url, flush_interval=10) as slow, slow.track("loop") as ctx:
        ctx.stage("copy", start=0, end=100)
        for n in ctx.items(range(500)):
            ctx.progress(message=f"item {n}")
        ctx.flush()

    progress = [x for x in logs if x.get("event") == "job progress"]
    assert 1 <= len(progress) <= 3
    assert {x["log_level"] for x in progress} == {"debug"}
    assert progress[-1]["stage"] == "copy"
    assert progress[-1]["message"] == "item 499"
    assert {x["log_level"] for x in logs if "state" in x} == {"info"}


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """structlog as an application that never configured it finds it."""
    with configured_as_before():
        structlog.reset_defaults()
        yield


@pytest.mark.usefixtures("unconfigured")
def test_a_tracker_leaves_the_hosts_logging_alone_and_writes_through_the_standard_library(
    database_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobtrail")
    with Tracker(database_url) as tracker, tracker.track("quiet") as ctx:
        ctx.progress(50, "halfway")
        ctx.flush()

    assert not structlog.is_configured()
    printed = capsys.readouterr()
    assert (printed.out, printed.err) == ("", "")  # Python shows INFO only when asked
    lines = [r for r in caplog.records if r.name == "jobtrail.jobs"]
    assert any("job started" in r.getMessage() and ctx.job_id in r.getMessage() for r in lines)
    assert any("job succeeded" in r.getMessage() for r in lines)
    assert all(r.levelno == logging.INFO for r in lines)
    assert "job progress" not in caplog.text


@pytest.mark.usefixtures("unconfigured")
def test_configure_logging_sends_state_changes_to_stderr_and_progress_stays_quiet(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging()
    with Tracker(database_url) as tracker, tracker.track("quiet") as ctx:
        ctx.progress(50, "halfway")
        ctx.flush()

    printed = capsys.readouterr()
    assert "job started" in printed.err
    assert "job succeeded" in printed.err
    assert ctx.job_id in printed.err
    assert "job progress" not in printed.err
    assert printed.out == ""


@pytest.mark.usefixtures("unconfigured")
def test_unconfigured_a_logged_traceback_reaches_the_standard_library_without_a_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    password = "pw-51ac9e"
    try:
        raise RuntimeError(f"cannot reach postgresql://jobtrail:{password}@db/jobs")
    except RuntimeError:
        logger("jobtrail.worker").exception(
            "maintenance task failed", conninfo=f"password={password}"
        )

    [record] = [r for r in caplog.records if r.name == "jobtrail.worker"]
    assert record.levelno == logging.ERROR
    text = record.getMessage()
    assert "maintenance task failed" in text
    assert "RuntimeError: cannot reach postgresql://jobtrail:" in text
    assert password not in caplog.text


@pytest.mark.usefixtures("unconfigured")
def test_with_logging_configured_a_logged_traceback_shows_no_locals_and_no_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging()
    password = "pw-7d1e0c"  # a local of the failing frame, as in a driver's connect
    try:
        raise RuntimeError(f"cannot reach postgresql://jobtrail:{password}@db/jobs")
    except RuntimeError:
        structlog.get_logger("jobtrail.worker").exception(
            "maintenance task failed", conninfo=f"host=db password={password}"
        )

    printed = capsys.readouterr().err
    assert "maintenance task failed" in printed
    assert "Traceback (most recent call last)" in printed
    assert "RuntimeError: cannot reach postgresql://jobtrail:" in printed
    assert password not in printed
