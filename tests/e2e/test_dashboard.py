"""The dashboard in a real headless Chromium, against the real `jobtrail serve` over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

import jobtrail
from jobtrail.filters import Filters
from tests.servers import free_port, require
from tests.waiting import until, until_answers

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
AXE = ROOT / ".cache" / "axe-core-4.14.1" / "axe.min.js"
"""Vendored by ``make install`` (scripts/vendor-axe.sh), never fetched by the tests."""
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class Served:
    """A running `jobtrail serve` with its store and an admin token."""

    base: str
    url: str
    token: str
    tracker: jobtrail.Tracker


@contextmanager
def _serve(folder: Path, *options: str) -> Iterator[Served]:
    """`jobtrail serve` of the dashboard's test app on a new SQLite store in ``folder``."""
    url = f"sqlite:///{folder / 'jobtrail.db'}"
    tracker = jobtrail.Tracker(url, flush_interval=0.05)
    token = tracker.ops.create_token("browser", None)
    port = free_port()
    env = os.environ | {
        "JOBTRAIL_DATABASE_URL": url,
        "JOBTRAIL_FLUSH_INTERVAL": "0.05",
        "JOBTRAIL_POLL_INTERVAL": "0.05",
        "JOBTRAIL_STREAM_POLL_INTERVAL": "0.1",
        "JOBTRAIL_GRACE_PERIOD": "2",
    }
    command = [str(Path(sys.executable).parent / "jobtrail"), "serve"]
    command += ["--app", "tests.apps.dashboard_app:tracker", "--port", str(port), *options]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        until_answers(f"{base}/api/v1/health", 30, what="jobtrail serve to answer")
        yield Served(base, url, token, tracker)
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn drains (the worker stops gracefully), then re-raises the signal it caught.
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
        tracker.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with _serve(tmp_path_factory.mktemp("dash"), "-c", "3") as running:
        yield running


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server that runs no jobs (``--no-worker``): no live worker consumes any queue."""
    with _serve(tmp_path_factory.mktemp("idle"), "--no-worker") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require("Chromium", CHROMIUM if Path(CHROMIUM).exists() else None)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, served: Served) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    signed_in = context.new_page()
    signed_in.goto(f"{served.base}/login")
    signed_in.fill("#token", served.token)
    signed_in.click("button[type=submit]")
    expect(signed_in.locator("h2#active-h")).to_be_visible()
    yield signed_in
    context.close()


def _submit(served: Served, kind: str, payload: dict[str, object]) -> str:
    """Submit through the API: the server's process has the handlers registered."""
    response = httpx.post(
        f"{served.base}/api/v1/jobs",
        json={"kind": kind, "payload": payload, "owner": "acme"},
        headers={"Authorization": f"Bearer {served.token}"},
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def _shot(page: Page, name: str) -> None:
    """Refresh docs/screenshots (only under `make screenshots`, so tests leave the tree alone)."""
    if os.environ.get("JOBTRAIL_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_login_refuses_a_wrong_token_and_pages_need_a_sign_in(
    browser: Browser, served: Served
) -> None:
    context = browser.new_context()
    anonymous = context.new_page()
    anonymous.goto(f"{served.base}/jobs")
    assert anonymous.url.endswith("/login")
    anonymous.fill("#token", "jt_not-a-real-token")
    anonymous.click("button[type=submit]")
    expect(anonymous.locator(".error")).to_have_text("That token is not valid.")
    cookies = context.cookies()
    assert not [c for c in cookies if c["name"] == "jobtrail_token"]
    context.close()


def test_the_session_cookie_is_http_only_and_same_site(page: Page) -> None:
    cookie = next(c for c in page.context.cookies() if c["name"] == "jobtrail_token")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"


def test_a_progress_bar_advances_live_while_another_process_reports(
    page: Page, served: Served
) -> None:
    steps = threading.Event()
    finish = threading.Event()
    started: list[str] = []

    def report() -> None:
        # This test process is not the server: its writes reach the page through the store.
        with served.tracker.track("import", owner="u1", total=10) as ctx:
            started.append(ctx.job_id)
            ctx.advance(2)
            ctx.flush()
            steps.wait(20)
            ctx.advance(5)
            ctx.progress(message="Importing row 7 of 10")
            ctx.flush()
            finish.wait(20)

    writer = threading.Thread(target=report)
    writer.start()
    try:
        until(lambda: started, what="the tracked job to start")
        job_id = started[0]
        page.goto(f"{served.base}/")
        row = page.locator(f'#active tr[data-job="{job_id}"]')
        expect(row.locator(".bar")).to_have_attribute("aria-valuenow", "20.0")
        steps.set()
        expect(row.locator(".bar")).to_have_attribute("aria-valuenow", "70.0", timeout=5000)
        expect(row.locator(".js-message")).to_have_text("Importing row 7 of 10")
        _shot(page, "overview")
        page.goto(f"{served.base}/jobs/{job_id}")
        expect(page.locator(".js-items")).to_have_text("7/10")
    finally:
        steps.set()
        finish.set()
        writer.join()
    expect(page.locator(".js-status .badge")).to_have_text("succeeded", timeout=5000)


def test_the_stage_of_a_running_job_changes_live_on_its_row_and_its_page(
    page: Page, served: Served
) -> None:
    next_stage = threading.Event()
    finish = threading.Event()
    started: list[str] = []

    def report() -> None:
        with served.tracker.track("media_sync", owner="u1") as ctx:
            ctx.stage("fetching", start=0, end=10, message="fetching the library")
            ctx.flush()
            started.append(ctx.job_id)
            next_stage.wait(20)
            ctx.stage("found", start=20, end=90, message="found 12 items")
            ctx.flush()
            finish.wait(20)

    writer = threading.Thread(target=report)
    writer.start()
    try:
        until(lambda: started, what="the tracked job to start")
        job_id = started[0]
        page.goto(f"{served.base}/")
        row = page.locator(f'#active tr[data-job="{job_id}"]')
        expect(row.locator(".js-stage")).to_have_text("fetching")
        next_stage.set()
        expect(row.locator(".js-stage")).to_have_text("found", timeout=5000)
        expect(row.locator(".bar")).to_have_attribute("aria-valuenow", "20.0")
        expect(row.locator(".js-message")).to_have_text("found 12 items")
        page.goto(f"{served.base}/jobs/{job_id}")
        expect(page.locator(".live-progress .js-stage")).to_have_text("found")
        expect(page.locator("#timeline .ev-stage")).to_have_count(2)
    finally:
        next_stage.set()
        finish.set()
        writer.join()


def test_history_filters_by_status_and_kind_and_keeps_them_in_the_url(
    page: Page, served: Served
) -> None:
    partial = _submit(served, "listing_sync", {"bad": ["L1"]})
    crashed = _submit(served, "crash", {"password": "hunter2"})
    served.tracker.wait(partial, 20)
    served.tracker.wait(crashed, 20)
    page.goto(f"{served.base}/jobs")
    page.check("input[name=status][value=failed]")
    page.fill("input[name=kind]", "crash")
    page.click(".filters button[type=submit]")
    assert "status=failed" in page.url
    assert "kind=crash" in page.url
    rows = page.locator("#history tbody tr")
    expect(rows.first).to_be_visible()
    kinds = rows.locator("td[data-label=Job] a").all_inner_texts()
    assert kinds
    assert set(kinds) == {"crash"}
    assert set(page.locator("#history .js-status .badge").all_inner_texts()) == {"failed"}
    expect(page.locator(f'#history tr[data-job="{crashed}"]')).to_be_visible()
    expect(page.locator(f'#history tr[data-job="{partial}"]')).to_have_count(0)
    _shot(page, "history")


def test_a_failed_job_shows_its_redacted_traceback(page: Page, served: Served) -> None:
    crashed = _submit(served, "crash", {"password": "hunter2"})
    served.tracker.wait(crashed, 20)
    page.goto(f"{served.base}/jobs/{crashed}")
    expect(page.locator(".js-status .badge")).to_have_text("failed")
    traceback = page.locator("pre.traceback")
    expect(traceback).to_contain_text("ValueError")
    expect(traceback).to_contain_text("password=[redacted]")
    assert "hunter2" not in page.content()


def test_a_partial_job_shows_its_failed_items_and_retries_only_them(
    page: Page, served: Served
) -> None:
    job = _submit(served, "listing_sync", {"bad": ["L2", "L4"]})
    assert served.tracker.wait(job, 20).status is jobtrail.Status.PARTIAL
    page.goto(f"{served.base}/jobs/{job}")
    items = page.locator("#failed-items tbody tr td.mono")
    expect(items).to_have_text(["L2", "L4"])
    _shot(page, "job")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#retry-failed")
    link = page.locator("#retry-link")
    expect(link).to_be_visible()
    href = link.get_attribute("href")
    assert href is not None
    retried = served.tracker.wait(href.rsplit("/", 1)[1], 20)
    assert retried.retry_of == job
    assert retried.result == {"ran": 2}
    assert retried.items_total == 6
    assert retried.items_failed == 2
    expect(page.locator("#timeline")).to_contain_text("retried as")


def test_cancelling_a_running_job_from_the_page_ends_it_cancelled(
    page: Page, served: Served
) -> None:
    job = _submit(served, "long_job", {})
    until(lambda: served.tracker.get(job).status is jobtrail.Status.RUNNING, 20)
    page.goto(f"{served.base}/jobs/{job}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    expect(page.locator("#action-result")).to_contain_text("Cancel")
    expect(page.locator(".js-status .badge")).to_have_text("cancelled", timeout=10_000)
    assert served.tracker.get(job).status is jobtrail.Status.CANCELLED
    events = served.tracker.events(job)
    requested = [e for e in events if e.type == "cancel_requested"]
    assert requested
    assert requested[0].actor == "browser"


def test_stats_and_schedules_pages_render_at_phone_width(
    browser: Browser, page: Page, served: Served
) -> None:
    page.goto(f"{served.base}/stats")
    expect(page.locator("svg.chart").first).to_be_visible()
    _shot(page, "stats")
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{served.base}/jobs")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400
    page.goto(f"{served.base}/schedules")
    expect(page.locator("h1")).to_have_text("Schedules")


def test_pages_keep_to_their_content_security_policy_and_sign_out_with_a_post(
    browser: Browser, served: Served
) -> None:
    context = browser.new_context()
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Security Policy" in m.text else None)
    page.goto(f"{served.base}/login")
    page.fill("#token", served.token)
    page.click("button[type=submit]")
    job = _submit(served, "long_job", {})
    try:
        until(lambda: served.tracker.get(job).progress > 0, 20, what="the job to report")
        page.goto(f"{served.base}/jobs/{job}")
        bar = page.locator(".live-progress .bar span")
        until(lambda: bar.evaluate("el => el.style.width").endswith("%"), 10, what="a bar width")
        page.goto(f"{served.base}/stats")
        page.select_option("select[name=window]", "7d")  # submits itself, without inline script
        page.wait_for_url("**/stats?window=7d")
        page.click("header .signout button")
        page.wait_for_url("**/login")
        assert not [c for c in context.cookies() if c["name"] == "jobtrail_token"]
    finally:
        served.tracker.cancel(job)
        context.close()
    assert blocked == []


# -- live figures, queues, bulk actions, search, accessibility ------------------------------


def _sign_in(browser: Browser, served: Served, token: str, **options: Any) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, **options)
    signed_in = context.new_page()
    signed_in.goto(f"{served.base}/login")
    signed_in.fill("#token", token)
    signed_in.click("button[type=submit]")
    expect(signed_in.locator("h2#active-h")).to_be_visible()
    return signed_in


@pytest.fixture(scope="module")
def parked(served: Served) -> str:
    """A kind submitted from this process to a queue no worker consumes: its jobs wait."""

    @served.tracker.job("parked_job", queue="parked")
    def parked_job(ctx: jobtrail.Context) -> None: ...

    return "parked_job"


def test_the_tiles_change_live_as_another_process_runs_jobs(
    browser: Browser, served: Served
) -> None:
    token = served.tracker.ops.create_token("tiles", "tiles-owner")
    page = _sign_in(browser, served, token)
    tile = page.locator("#tiles [data-count]")
    expect(page.locator('#tiles [data-count="running"]')).to_have_text("0")
    release = threading.Event()
    started = threading.Event()

    def run() -> None:
        with served.tracker.track("import", owner="tiles-owner") as ctx:
            ctx.progress(10, "working")
            started.set()
            release.wait(20)

    writer = threading.Thread(target=run)
    writer.start()
    try:
        started.wait(10)
        expect(page.locator('#tiles [data-count="running"]')).to_have_text("1", timeout=5000)
        expect(page.locator('#tiles [data-count="succeeded"]')).to_have_text("0")
        expect(page.locator('#tiles [data-count="success"]')).to_have_text("–")
        release.set()
        writer.join()
        expect(page.locator('#tiles [data-count="succeeded"]')).to_have_text("1", timeout=5000)
        expect(page.locator('#tiles [data-count="running"]')).to_have_text("0")
        expect(page.locator('#tiles [data-count="success"]')).to_have_text("100%")
        assert tile.count() == 8
        expect(page.locator("#failures-panel")).to_contain_text("No failures.")
        with pytest.raises(RuntimeError), served.tracker.track("export", owner="tiles-owner"):
            raise RuntimeError("disk full")
        expect(page.locator('#tiles [data-count="failed"]')).to_have_text("1", timeout=5000)
        expect(page.locator('#tiles [data-count="success"]')).to_have_text("50%")
        expect(page.locator("#failures-panel li")).to_contain_text("export")
    finally:
        release.set()
        writer.join()
        page.context.close()


def test_the_queues_page_counts_live_and_links_the_workers(
    page: Page, served: Served, parked: str
) -> None:
    page.goto(f"{served.base}/queues")
    row = page.locator('tr[data-queue="parked"]')
    jobs = [served.tracker.submit(parked, owner="acme").id for _ in range(3)]
    expect(row.locator('[data-n="queued"]')).to_have_text("3", timeout=10_000)
    # The server's worker takes every queue (it has no handler of this kind: they wait).
    expect(row.locator('[data-n="workers"]')).to_have_text("1 worker")
    expect(row.locator(".js-unattended")).to_have_count(0)
    served.tracker.bulk("cancel", jobs, actor="test")
    expect(row.locator('[data-n="queued"]')).to_have_text("0", timeout=10_000)
    expect(row.locator('[data-n="finished"]')).to_have_text("3")
    _shot(page, "queues")
    page.click('tr[data-queue="parked"] a[href="/workers"]')
    expect(page.locator("h1")).to_have_text("Workers")


WORK = ("queued", "waiting")


def test_a_queue_with_work_and_no_live_worker_stands_out(browser: Browser, idle: Served) -> None:
    @idle.tracker.job("nightly", queue="reports")
    def nightly(ctx: jobtrail.Context) -> None: ...

    page = _sign_in(browser, idle, idle.token)
    try:
        page.goto(f"{idle.base}/queues")
        expect(page.locator(".empty")).to_contain_text("No queue has work")
        first = nightly.submit().id
        row = page.locator('tr[data-queue="reports"]')
        expect(row.locator(".js-unattended")).to_have_text("no worker", timeout=10_000)
        expect(row).to_have_class("unattended")
        expect(row.locator('[data-n="workers"]')).to_have_text("0 workers")
        nightly.submit()
        until(
            lambda: (
                sum(int(row.locator(f'[data-n="{n}"]').inner_text()) for n in ("queued", "waiting"))
                == 2
            ),
            10,
            what="the second job counted",
        )
        idle.tracker.cancel(first)
        expect(row.locator('[data-n="finished"]')).to_have_text("1", timeout=10_000)
    finally:
        page.context.close()


def test_bulk_actions_cancel_all_that_match_and_retry_the_selected(
    page: Page, served: Served, parked: str
) -> None:
    owner = "bulk-owner"
    jobs = [served.tracker.submit(parked, owner=owner).id for _ in range(100)]
    page.goto(f"{served.base}/jobs?q=owner:{owner}")
    expect(page.locator("#total")).to_contain_text("100 jobs")
    page.check("#bulk-all")
    expect(page.locator("#bulk-count")).to_have_text("100 jobs selected")
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click('#bulk button[data-action="cancel"]')
    expect(page.locator("#bulk-result")).to_have_text("Cancelled 100 jobs.", timeout=10_000)
    assert asked == ["Cancel 100 jobs?"]
    assert {served.tracker.get(j).status for j in jobs} == {jobtrail.Status.CANCELLED}
    cancelled = [e for e in served.tracker.events(jobs[0]) if e.type == "cancelled"]
    assert [e.actor for e in cancelled] == ["browser"]
    expect(page.locator(f'#history tr[data-job="{jobs[-1]}"] .badge')).to_have_text("cancelled")

    page.reload()
    picked = page.locator("#history input.pick")
    for n in range(3):
        picked.nth(n).check()
    expect(page.locator("#bulk-count")).to_have_text("3 jobs selected")
    page.once("dialog", accept)
    page.click('#bulk button[data-action="retry"]')
    expect(page.locator("#bulk-result")).to_have_text("Queued retries of 3 jobs.")
    assert asked[-1] == "Retry 3 jobs?"
    retried = served.tracker.list(owner=owner, trigger="retry", limit=10)
    assert retried.total_count == 3
    served.tracker.bulk("cancel", where=Filters(owner=owner, trigger="retry"))


def test_search_finds_jobs_by_id_prefix_kind_and_message(page: Page, served: Served) -> None:
    crashed = _submit(served, "crash", {"password": "x"})
    served.tracker.wait(crashed, 20)
    page.goto(f"{served.base}/jobs")
    page.fill("input[name=q]", crashed[:8])
    page.press("input[name=q]", "Enter")
    expect(page.locator("#history tbody tr")).to_have_count(1)
    expect(page.locator(f'#history tr[data-job="{crashed}"]')).to_be_visible()
    page.fill("input[name=q]", "kind:crash status:failed")
    page.press("input[name=q]", "Enter")
    page.wait_for_url(lambda url: "status%3Afailed" in url)  # the search's page, not the last
    expect(page.locator("#history td[data-label=Job] a").first).to_be_visible()
    kinds = page.locator("#history td[data-label=Job] a").all_inner_texts()
    assert kinds
    assert set(kinds) == {"crash"}


def test_the_stats_charts_are_by_the_minute_on_a_fresh_window(page: Page, served: Served) -> None:
    page.goto(f"{served.base}/stats")
    expect(page.locator("#throughput-h")).to_contain_text("per minute")
    chart = page.locator("#charts svg.chart").first
    expect(chart).to_be_visible()
    assert chart.locator("rect").count() >= 1
    page.select_option("select[name=window]", "24h")
    page.wait_for_url("**/stats?window=24h")
    expect(page.locator("#throughput-h")).to_contain_text("per hour")
    response = page.request.get(f"{served.base}/stats?window=5y")
    assert response.status == 422


def test_every_action_of_a_job_works_from_the_keyboard_with_a_visible_focus(
    page: Page, served: Served
) -> None:
    job = _submit(served, "long_job", {})
    until(lambda: served.tracker.get(job).status is jobtrail.Status.RUNNING, 20)
    page.goto(f"{served.base}/jobs/{job}")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "cancel":
            break
    focused = page.locator("#cancel")
    expect(focused).to_be_focused()
    outline = focused.evaluate(
        "el => getComputedStyle(el).outlineStyle + ' ' + getComputedStyle(el).outlineWidth"
    )
    assert outline.startswith("solid"), outline
    page.once("dialog", lambda dialog: dialog.accept())
    page.keyboard.press("Enter")
    expect(page.locator(".js-status .badge")).to_have_text("cancelled", timeout=10_000)


def _serious_violations(page: Page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    found: list[str] = page.evaluate(
        """async () => {
            const result = await axe.run(document, { resultTypes: ["violations"] });
            return result.violations
                .filter((v) => v.impact === "serious" || v.impact === "critical")
                .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
        }"""
    )
    return found


def test_axe_finds_no_serious_violation_on_any_page(browser: Browser, served: Served) -> None:
    require("axe-core (make test vendors it)", str(AXE) if AXE.exists() else None)
    job = _submit(served, "listing_sync", {"bad": ["L1"]})
    served.tracker.wait(job, 20)
    # The pages' policy allows only their own scripts; the check's script is added around it.
    page = _sign_in(browser, served, served.token, bypass_csp=True)
    try:
        found = {}
        pages = ["/", "/jobs", f"/jobs/{job}", "/queues", "/stats", "/schedules", "/workers"]
        for path in [*pages, "/alerts"]:
            page.goto(f"{served.base}{path}")
            page.wait_for_load_state("networkidle")
            found[path] = _serious_violations(page)
        page.context.clear_cookies()
        page.goto(f"{served.base}/login")
        found["/login"] = _serious_violations(page)
    finally:
        page.context.close()
    assert found == {path: [] for path in found}


def test_the_demo_shows_live_counts_and_queues(browser: Browser, tmp_path: Path) -> None:
    """`jobtrail demo` (open mode): its overview fills with live jobs and counts; under
    `make screenshots` this is the README's picture."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "jobtrail"), "demo", "--port", str(port)]
    command += ["--database-url", f"sqlite:///{tmp_path / 'demo.db'}"]
    process = subprocess.Popen(command, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        until_answers(f"{base}/api/v1/health", 30, what="jobtrail demo to answer")
        page = context.new_page()
        page.goto(f"{base}/")
        until(lambda: _tile(page, "succeeded") > 0, 30, what="a demo job to succeed")
        expect(page.locator("#active tbody tr").first).to_be_visible(timeout=20_000)
        seen = _tile(page, "succeeded")
        until(lambda: _tile(page, "succeeded") > seen, 30, what="the count to move live")
        _shot(page, "dashboard")
        page.goto(f"{base}/queues")
        expect(page.locator("#queues tbody tr").first).to_be_visible()
    finally:
        context.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)


def _tile(page: Page, status: str) -> int:
    return int(page.locator(f'#tiles [data-count="{status}"]').inner_text())
