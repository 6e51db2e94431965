"""The media sync example over real HTTP: its app and its fake media client, each served by
uvicorn on a free loopback port, and its polling page in a real headless Chromium."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.examples.processes import Fleet, Served
from tests.servers import require
from tests.waiting import until

APP = "examples.media_sync.app:app"
UPSTREAM = "examples.media_sync.upstream:app"
ITEMS = 12
Json = dict[str, Any]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    directory = tmp_path_factory.mktemp("media")
    started = Fleet(directory, f"sqlite:///{directory / 'media.db'}")
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture(scope="module")
def app(fleet: Fleet) -> Served:
    upstream = fleet.serve(UPSTREAM, "upstream", MEDIA_SYNC_ITEM_DELAY="0.15")
    return fleet.serve(APP, "app", MEDIA_SYNC_UPSTREAM_URL=upstream.url)


@pytest.fixture
def client(app: Served) -> Iterator[httpx.Client]:
    with app.client() as c:
        yield c


def start(client: httpx.Client) -> str:
    response = client.post("/api/v1/jobs/media-sync")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status_url"] == f"/api/v1/jobs/media-sync/{body['id']}/progress"
    run_id: str = body["id"]
    return run_id


def progress(client: httpx.Client, run_id: str) -> Json:
    response = client.get(f"/api/v1/jobs/runs/{run_id}/progress")
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


def watch(client: httpx.Client, run_id: str, timeout: float = 30) -> list[Json]:
    """Every progress answer until the run is no longer running."""
    seen = [progress(client, run_id)]
    deadline = time.monotonic() + timeout
    while seen[-1]["status"] == "running":
        assert time.monotonic() < deadline, seen[-1]
        time.sleep(0.02)
        seen.append(progress(client, run_id))
    return seen


def in_band(answer: Json) -> bool:
    """While items are processed, the percentage is 20 % plus 70 % of the share done."""
    expected = 20 + 70 * answer["processedItems"] / ITEMS
    return bool(abs(answer["progress"] - expected) < 1e-6)


def test_a_run_moves_through_its_stages_and_items_in_order(client: httpx.Client) -> None:
    run_id = start(client)
    seen = watch(client, run_id)
    percents = [a["progress"] for a in seen]
    assert percents == sorted(percents)
    processing = [a for a in seen if (a["statusMessage"] or "").startswith("Processing item")]
    assert len(processing) >= 3
    numbers = [int(a["statusMessage"].split()[2]) for a in processing]
    assert numbers == sorted(numbers)
    for answer in processing:
        n = int(answer["statusMessage"].split()[2])
        assert answer["statusMessage"] == f"Processing item {n} of {ITEMS}"
        assert answer["processedItems"] in (n - 1, n)
        assert answer["totalItems"] == ITEMS
        assert in_band(answer)
        assert answer["progressData"]["stage"] == "processing"
        assert answer["progressData"]["current_item"]
    assert seen[-1] == {
        "id": run_id,
        "status": "completed",
        "progress": 100.0,
        "totalItems": ITEMS,
        "processedItems": ITEMS,
        "statusMessage": "Media sync completed successfully",
        "progressData": {"stage": "done", "current_item": "Morning Fog"},
    }
    events = client.get(f"/jobtrail/api/v1/jobs/{run_id}/events").json()["events"]
    stages = [(e["message"], e["data"]["start"]) for e in events if e["type"] == "stage"]
    assert stages == [
        ("starting: Starting media sync", 0),
        ("fetching: Fetching media items from client", 10),
        ("processing: Found 12 items to process", 20),
        ("done: Media sync completed successfully", 100),
    ]
    job = client.get(f"/jobtrail/api/v1/jobs/{run_id}").json()
    assert job["trigger"] == "manual"


def test_both_progress_paths_answer_alike_and_unknown_runs_are_404s(client: httpx.Client) -> None:
    run_id = start(client)
    watch(client, run_id)
    by_kind = client.get(f"/api/v1/jobs/media-sync/{run_id}/progress")
    assert by_kind.json() == progress(client, run_id)
    for path in (
        "/api/v1/jobs/runs/nope/progress",
        "/api/v1/jobs/media-sync/nope/progress",
        "/runs/nope",
    ):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["detail"] == "Run 'nope' not found"


def test_active_runs_are_listed_with_their_progress_until_they_end(client: httpx.Client) -> None:
    run_id = start(client)

    def listed() -> Json:
        active = client.get("/api/v1/jobs/active").json()
        return next((answer for answer in active if answer["id"] == run_id), {})

    answer = until(listed, 10, what="the run among the active ones")
    assert answer["status"] == "running"
    assert set(answer) == {
        "id",
        "status",
        "progress",
        "totalItems",
        "processedItems",
        "statusMessage",
        "progressData",
    }
    watch(client, run_id)
    assert listed() == {}


def test_a_failing_client_fails_the_scheduled_run_with_its_error(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, f"sqlite:///{tmp_path / 'failing.db'}")
    try:
        failing = {"MEDIA_SYNC_ITEM_DELAY": "0.05", "MEDIA_SYNC_FAIL_AFTER": "5"}
        upstream = fleet.serve(UPSTREAM, "up", **failing)
        app = fleet.serve(APP, "app", MEDIA_SYNC_UPSTREAM_URL=upstream.url, MEDIA_SYNC_INTERVAL="1")
        with app.client() as client:

            def scheduled() -> list[Json]:
                query = {"kind": "media_sync", "trigger": "scheduled"}
                jobs: list[Json] = client.get("/jobtrail/api/v1/jobs", params=query).json()["jobs"]
                return jobs

            run_id = until(scheduled, 20, what="a scheduled run")[-1]["id"]
            answer = watch(client, run_id)[-1]
    finally:
        fleet.stop_all()
    assert answer["status"] == "failed"
    error = "RuntimeError: Media client error: media client failed at item 5"
    assert answer["statusMessage"] == error
    assert (answer["processedItems"], answer["totalItems"]) == (4, ITEMS)
    assert in_band(answer)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require("Chromium", CHROMIUM if Path(CHROMIUM).exists() else None)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_the_polling_page_shows_the_bar_until_the_run_completes(
    browser: Browser, app: Served, client: httpx.Client
) -> None:
    page_url = client.post("/api/v1/jobs/media-sync").json()["page_url"]
    polls: list[float] = []
    page = browser.new_page()
    page.on("request", lambda r: polls.append(time.monotonic()) if "/progress" in r.url else None)
    page.goto(f"{app.url}{page_url}")
    expect(page.locator("#status")).to_have_text("running")
    expect(page.locator("#status")).to_have_text("completed", timeout=20_000)
    expect(page.locator("#percent")).to_have_text("100%")
    expect(page.locator("#items")).to_have_text(f"{ITEMS} of {ITEMS} items")
    expect(page.locator("#message")).to_have_text("Media sync completed successfully")
    assert page.locator("#bar").evaluate("bar => bar.value") == 100
    gaps = [later - earlier for earlier, later in itertools.pairwise(polls)]
    assert gaps
    assert all(gap > 1.5 for gap in gaps), gaps  # every 2 s, not faster
    polled = len(polls)
    page.wait_for_timeout(2500)
    assert len(polls) == polled  # no poll once the run completed
    page.close()


def test_the_jobtrail_dashboard_mounted_at_jobtrail_shows_the_runs_live(
    browser: Browser, app: Served, client: httpx.Client
) -> None:
    page = browser.new_page()
    page.goto(f"{app.url}/jobtrail/")
    expect(page.locator("h2#active-h")).to_be_visible()
    assert page.evaluate("document.styleSheets[0].cssRules.length") > 0  # /jobtrail/static/
    run_id = start(client)
    row = page.locator(f'#active tr[data-job="{run_id}"]')  # added from the SSE stream
    expect(row).to_be_visible(timeout=15_000)
    link = row.locator("a")
    expect(link).to_have_attribute("href", f"/jobtrail/jobs/{run_id}")
    link.click()
    expect(page).to_have_url(f"{app.url}/jobtrail/jobs/{run_id}")
    expect(page.locator("#job .js-status")).to_have_text("succeeded", timeout=20_000)
    expect(page.locator("#timeline")).to_contain_text("Media sync completed successfully")
    page.close()
