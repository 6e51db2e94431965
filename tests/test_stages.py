"""Stages: a named stage owns a band of the percentage, every stage change is an event, and the
job's ``stage`` field names the current one — in the store, the API and the dashboard."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from jobtrail import Context, Status, Tracker
from jobtrail.web import create_app
from tests.waiting import until
from tests.web.client import TESTCLIENT_WARNING, open_client

if TYPE_CHECKING:
    pass

pytestmark = TESTCLIENT_WARNING


@pytest.fixture
def eager(database_url: str) -> Iterator[Tracker]:
    """A tracker that writes on every reporting call (so each step can be read back)."""
    with Tracker(database_url, flush_interval=0) as t:
        yield t


def stored_progress(tracker: Tracker, ctx: Context) -> tuple[float, str | None]:
    ctx.flush()
    job = tracker.get(ctx.job_id)
    return job.progress, job.stage


# -- the band -------------------------------------------------------------------------------


def test_the_media_sync_moves_through_its_stages_and_items_fill_only_their_band(
    eager: Tracker,
) -> None:
    seen: list[tuple[float, str | None]] = []
    with eager.track("media_sync") as ctx:
        ctx.stage("fetching", start=0, end=10, message="fetching the library")
        seen.append(stored_progress(eager, ctx))
        ctx.progress(50)
        seen.append(stored_progress(eager, ctx))
        ctx.stage("found", start=20, end=90, message="found 4 items")
        seen.append(stored_progress(eager, ctx))
        for name in ctx.items(["a", "b", "c", "d"]):
            with ctx.item(name):
                pass
            seen.append(stored_progress(eager, ctx))
        ctx.stage("done", start=100)

    job = eager.get(ctx.job_id)
    assert seen == [
        (0.0, "fetching"),
        (5.0, "fetching"),
        (20.0, "found"),
        (37.5, "found"),
        (55.0, "found"),
        (72.5, "found"),
        (90.0, "found"),
    ]
    assert (job.status, job.progress, job.stage) == (Status.SUCCEEDED, 100.0, "done")
    assert job.items_succeeded == 4


@pytest.mark.parametrize("progress_first", [True, False])
def test_a_percentage_and_item_counts_in_one_stage_agree_whatever_the_call_order(
    eager: Tracker, progress_first: bool
) -> None:
    with eager.track("media_sync") as ctx:
        ctx.stage("found", start=20, end=90)
        if progress_first:
            ctx.progress(0, "found 4 items")
            ctx.set_total(4)
        else:
            ctx.set_total(4)
            ctx.progress(0, "found 4 items")
        steps = []
        for _ in range(4):
            ctx.advance()
            steps.append(stored_progress(eager, ctx)[0])

    assert steps == [37.5, 55.0, 72.5, 90.0]


def test_progress_inside_a_stage_is_a_percentage_of_its_band_and_absolute_outside(
    eager: Tracker,
) -> None:
    with eager.track("t") as ctx:
        ctx.progress(30)
        outside = stored_progress(eager, ctx)
        ctx.stage("upload", start=40, end=60)
        ctx.progress(50)
        middle = stored_progress(eager, ctx)
        ctx.progress(250)  # clamped to the stage's end, like any percentage
        clamped = stored_progress(eager, ctx)

    assert outside == (30.0, None)
    assert middle == (50.0, "upload")
    assert clamped == (60.0, "upload")


def test_a_stage_starts_at_the_current_percentage_and_runs_to_100_by_default(
    eager: Tracker,
) -> None:
    with eager.track("t") as ctx:
        ctx.progress(25)
        ctx.stage("rest")
        at_start = stored_progress(eager, ctx)
        ctx.set_total(2)
        ctx.advance()
        halfway = stored_progress(eager, ctx)
        ctx.advance()

    assert at_start == (25.0, "rest")
    assert halfway == (62.5, "rest")


def test_a_later_item_stage_counts_only_the_items_left_when_it_began(eager: Tracker) -> None:
    with eager.track("t") as ctx:
        ctx.stage("download", start=0, end=50)
        ctx.set_total(4)  # the job's total: two items in each stage
        ctx.advance(2)
        end_of_download = stored_progress(eager, ctx)
        ctx.stage("convert", start=50, end=100)
        start_of_convert = stored_progress(eager, ctx)
        ctx.advance()
        halfway = stored_progress(eager, ctx)
        ctx.advance()

    assert end_of_download == (25.0, "download")  # 2 of the job's 4 items
    assert start_of_convert == (50.0, "convert")  # not the band's end: its items are to come
    assert halfway == (75.0, "convert")


def test_a_job_that_succeeds_with_its_items_done_inside_a_band_ends_at_100(
    eager: Tracker,
) -> None:
    with eager.track("t") as ctx:
        ctx.stage("sync", start=10, end=80)
        for n in ctx.items(range(3)):
            with ctx.item(n):
                pass

    job = eager.get(ctx.job_id)
    assert (job.status, job.progress, job.stage) == (Status.SUCCEEDED, 100.0, "sync")


@pytest.mark.parametrize(
    ("start", "end"), [(50, 40), (-1, 10), (0, 101), (math.nan, 10), (0, math.inf)]
)
def test_a_band_outside_0_to_100_or_backwards_is_refused(
    tracker: Tracker, start: float, end: float
) -> None:
    with tracker.track("t") as ctx:
        with pytest.raises(ValueError, match="0 <= start <= end <= 100"):
            ctx.stage("bad", start=start, end=end)
        ctx.flush()
        assert tracker.get(ctx.job_id).stage is None


# -- the history ----------------------------------------------------------------------------


def test_every_stage_change_within_one_flush_interval_is_kept_in_order(
    database_url: str,
) -> None:
    with Tracker(database_url, flush_interval=10) as slow:
        with slow.track("media_sync") as ctx:
            ctx.progress(message="Job started")
            ctx.stage("fetching", start=0, end=10)
            ctx.progress(message="page 1")
            ctx.progress(message="page 2")
            ctx.stage("found", start=20, end=90, message="found 3 items")
            ctx.progress(message="item 1")
            ctx.stage("done", start=100)
            unwritten = slow.get(ctx.job_id)
        events = slow.events(ctx.job_id)
        job = slow.get(ctx.job_id)

    assert unwritten.stage is None  # coalesced in memory until the next write
    shown = [(e.type, e.message) for e in events]
    assert shown == [
        ("created", None),
        ("started", None),
        ("progress", "Job started"),
        ("stage", "fetching"),
        ("progress", "page 2"),  # messages stay coalesced: "page 1" never reached the store
        ("stage", "found: found 3 items"),
        ("progress", "item 1"),
        ("stage", "done"),
        ("succeeded", None),
    ]
    stages = [e.data for e in events if e.type == "stage"]
    assert stages[1] == {"stage": "found", "start": 20.0, "end": 90.0}
    assert (job.stage, job.message) == ("done", "item 1")


def test_a_stage_name_is_cleaned_redacted_and_cut_to_the_column(tracker: Tracker) -> None:
    with tracker.track("t") as ctx:
        ctx.stage("token=abcd1234secret " + "x" * 300)
        ctx.flush()
        job = tracker.get(ctx.job_id)

    assert job.stage is not None
    assert len(job.stage) == 100
    assert "abcd1234secret" not in job.stage


def test_a_new_attempt_starts_outside_the_stage_its_last_attempt_reached(
    tracker: Tracker,
) -> None:
    stages_at_start: list[str | None] = []

    @tracker.job("flaky_sync", max_attempts=2, retry_backoff=0.01)
    def flaky_sync(ctx: Context) -> None:
        stages_at_start.append(tracker.get(ctx.job_id).stage)
        ctx.stage("fetching", start=0, end=50)
        if ctx.attempt == 1:
            raise ConnectionError("upstream went away")

    job = flaky_sync.submit()
    with tracker.worker(1, poll_interval=0.01):
        done = tracker.wait(job.id, timeout=20)

    assert done.status is Status.SUCCEEDED
    assert done.attempt == 2
    assert stages_at_start == [None, None]
    assert [e.type for e in tracker.events(job.id)].count("stage") == 2


# -- where the stage shows ------------------------------------------------------------------


def test_the_api_and_the_dashboard_show_the_current_stage_of_a_running_job(
    tracker: Tracker,
) -> None:
    token = tracker.ops.create_token("admin", None)
    headers = {"Authorization": f"Bearer {token}"}
    release = threading.Event()
    started: list[str] = []

    def run() -> None:
        with tracker.track("media_sync", owner="acme") as ctx:
            ctx.stage("found", start=20, end=90, message="found 12 items")
            ctx.flush()
            started.append(ctx.job_id)
            release.wait(20)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        until(lambda: started, what="the tracked job to report its stage")
        job_id = started[0]
        with open_client(create_app(tracker, run_worker=False)) as client:
            job = client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
            progress = client.get(f"/api/v1/jobs/{job_id}/progress", headers=headers).json()
            events = client.get(f"/api/v1/jobs/{job_id}/events", headers=headers).json()
            client.cookies.set("jobtrail_token", token)
            page = client.get(f"/jobs/{job_id}").text
            overview = client.get("/").text
    finally:
        release.set()
        worker.join()

    assert (job["stage"], job["progress"], job["message"]) == ("found", 20.0, "found 12 items")
    assert (progress["stage"], progress["progress"]) == ("found", 20.0)
    assert [e["type"] for e in events["events"]][-1] == "stage"
    assert '<strong class="stage js-stage">found</strong>' in page
    assert '<strong class="stage js-stage">found</strong>' in overview


def test_the_progress_endpoint_documents_the_stage(tracker: Tracker) -> None:
    with open_client(create_app(tracker, run_worker=False)) as client:
        schema = client.get("/openapi.json").json()

    fields = schema["components"]["schemas"]["ProgressResponse"]["properties"]
    assert "stage" in fields
    assert "stage" in schema["components"]["schemas"]["Job"]["properties"]
