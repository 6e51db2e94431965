"""message_trace over real HTTP: the uvicorn-served app consuming a real Redis Stream as a
consumer group, its standalone status service, retention with the clock moved, and the
polling page in a real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from examples.launcher import free_port, processes
from examples.message_trace.consumer import GROUP, STREAM, Consumer
from examples.message_trace.traces import open_tracker
from playwright.sync_api import Browser, expect

import jobtrail
from tests.e2e import test_dashboard
from tests.servers import RedisServer
from tests.test_retention import age
from tests.waiting import until

browser = test_dashboard.browser  # the one headless Chromium fixture
DONE = {"success", "failed", "not_found"}


@dataclass(frozen=True)
class Stack:
    """The running example: the app, the status service, the stream and the store."""

    base: str
    service: str
    client: redis.Redis
    tracker: jobtrail.Tracker

    def publish(self, message_id: str | None, path: str, user: str, **more: str) -> str:
        fields = {"url": path, "line_user_id": user, **more}
        if message_id is not None:
            fields["message_id"] = message_id
        entry_id: str = self.client.xadd(STREAM, fields)  # type: ignore[arg-type,assignment]
        return message_id or entry_id

    def trace(self, message_id: str) -> httpx.Response:
        return httpx.get(f"{self.base}/api/v1/jobs/status/{message_id}")

    def finished(self, message_id: str, timeout: float = 30) -> dict[str, Any]:
        """The trace once it ended."""

        def ended() -> dict[str, Any]:
            answer = self.trace(message_id)
            body: dict[str, Any] = answer.json()
            return body if answer.status_code == 200 and body["status"] in DONE else {}

        return until(ended, timeout, what=f"the trace of {message_id} to end", poll=0.05)

    def user(self, user: str) -> dict[str, Any]:
        traces: dict[str, Any] = httpx.get(f"{self.base}/api/v1/jobs/user/{user}").json()
        return traces

    def pending(self) -> int:
        summary: Any = self.client.xpending(STREAM, GROUP)
        return int(summary["pending"])


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = f"sqlite:///{tmp_path_factory.mktemp('trace') / 'message_trace.db'}"
    broker = redis_server.url(4)
    client = redis.Redis.from_url(broker, decode_responses=True)
    client.flushdb()
    site = free_port()
    env = {
        "JOBTRAIL_DATABASE_URL": url,
        "JOBTRAIL_FLUSH_INTERVAL": "0.05",
        "JOBTRAIL_POLL_INTERVAL": "0.05",
        "JOBTRAIL_STREAM_POLL_INTERVAL": "0.1",
        "MESSAGE_TRACE_REDIS_URL": broker,
        "MESSAGE_TRACE_UPSTREAM_URL": f"http://127.0.0.1:{site}",
        "MESSAGE_TRACE_CLAIM_IDLE": "0.5",
    }
    tracker = open_tracker(url)
    try:
        with processes(env) as group:
            group.serve("examples.message_trace.upstream:app", site)
            base = group.serve("examples.message_trace.app:app", free_port())
            service = group.serve("examples.message_trace.status_service:app", free_port())
            yield Stack(base, service, client, tracker)
    finally:
        tracker.close()
        client.close()


def test_a_page_is_scraped_a_missing_one_is_not_found_and_a_broken_one_fails(
    stack: Stack,
) -> None:
    ok = stack.publish("m-ok", "/property/ok-harbour", "U1")
    gone = stack.publish("m-gone", "/property/missing-sold", "U1")
    broken = stack.publish("m-broken", "/property/flaky-down", "U1")
    check = stack.publish(
        "m-check", "/property/ok-park", "U1", job_type="batch_check", check_only="true"
    )
    stack.client.xadd(STREAM, {"check_only": "maybe"})  # malformed: acknowledged, no trace
    scraped = stack.finished(ok)
    assert scraped["status"] == "success"
    assert scraped["result"]["listing"]["name"] == "Listing ok-harbour"
    assert scraped["started_at"] <= scraped["completed_at"]
    assert (scraped["message_id"], scraped["line_user_id"]) == ("m-ok", "U1")
    assert stack.finished(gone)["status"] == "not_found"
    assert stack.finished(gone)["result"] == {"outcome": "not_found"}
    failed = stack.finished(broken)
    assert failed["status"] == "failed"
    assert "500 Internal Server Error" in failed["error"]
    job = httpx.get(f"{stack.base}/jobtrail/api/v1/jobs/{failed['id']}").json()
    assert job["attempt"] == 3  # retried, then failed
    checked = stack.finished(check)
    assert (checked["job_type"], checked["check_only"]) == ("batch_check", True)
    assert checked["result"] == {"outcome": "available"}
    assert stack.user("U1")["total_count"] == 4
    until(lambda: stack.pending() == 0, 10, what="every message to be acknowledged")
    dashboard = httpx.get(f"{stack.base}/jobtrail/jobs", params={"kind": "property_scrape"})
    assert f'href="/jobtrail/jobs/{scraped["id"]}"' in dashboard.text


def test_a_redelivered_message_never_creates_a_second_trace(stack: Stack) -> None:
    first = stack.publish("m-twice", "/property/ok-twice", "U2")
    assert stack.finished(first)["status"] == "success"
    stack.publish("m-twice", "/property/ok-twice", "U2")  # delivered again, same message id
    until(lambda: stack.pending() == 0, 10, what="the second delivery to be acknowledged")
    # A consumer that recorded the trace and died before its ack: the app claims the
    # message after MESSAGE_TRACE_CLAIM_IDLE and finds the trace by the message id.
    with stack.client.pipeline(transaction=True) as atomic:  # delivered to the dead one only
        atomic.xadd(STREAM, {"url": "/property/ok-lost", "line_user_id": "U2"})
        atomic.xreadgroup(GROUP, "dead-consumer", {STREAM: ">"}, count=1)
        entry_id, delivered = atomic.execute()
    dead = Consumer(stack.client, stack.tracker, "dead-consumer", claim_idle=60)
    dead.handle(entry_id, delivered[0][1][0][1])
    assert stack.pending() == 1
    until(lambda: stack.pending() == 0, 15, what="the app to claim the dead consumer's message")
    assert stack.finished(entry_id)["status"] == "success"
    traces = stack.user("U2")
    assert traces["total_count"] == 2
    assert sorted(t["message_id"] for t in traces["jobs"]) == sorted(["m-twice", entry_id])


def test_the_mounted_api_and_the_status_service_agree(stack: Stack) -> None:
    for n in range(3):
        stack.finished(stack.publish(f"m-agree-{n}", f"/property/ok-agree-{n}", "U3"))
    for n in range(3):
        mounted = stack.trace(f"m-agree-{n}").json()
        alone = httpx.get(f"{stack.service}/job/status", params={"message_id": f"m-agree-{n}"})
        assert alone.json() == mounted
    page = httpx.get(f"{stack.base}/api/v1/jobs/user/U3", params={"limit": 2, "skip": 1}).json()
    params: dict[str, str | int] = {"line_user_id": "U3", "limit": 2, "skip": 1}
    assert httpx.get(f"{stack.service}/job/user", params=params).json() == page
    assert (page["total_count"], page["limit"], page["skip"]) == (3, 2, 1)
    assert [t["message_id"] for t in page["jobs"]] == ["m-agree-1", "m-agree-0"]
    assert stack.trace("m-never-sent").status_code == 404
    missing = httpx.get(f"{stack.service}/job/status", params={"message_id": "m-never-sent"})
    assert missing.status_code == 404
    assert "m-never-sent" in missing.json()["detail"]
    assert httpx.get(f"{stack.service}/job/user", params={"limit": 5}).status_code == 422
    bad = httpx.get(f"{stack.base}/api/v1/jobs/user/U3", params={"limit": 101})
    assert bad.status_code == 422


# (path, days since creation, days since completion, purged): 7 days after creation, and
# 3 days after completion whatever the outcome.
RETENTION = [
    ("/property/ok-r1", 8.0, 1.0, True),
    ("/property/ok-r2", 6.5, 6.0, True),
    ("/property/ok-r3", 6.5, 2.5, False),
    ("/property/ok-r4", 3.5, 3.2, True),
    ("/property/ok-r5", 2.0, 2.0, False),
    ("/property/missing-r6", 4.0, 3.5, True),
    ("/property/flaky-r7", 4.0, 3.5, True),
    ("/property/flaky-r8", 2.9, 2.9, False),
]


def test_retention_deletes_exactly_the_traces_past_their_age(stack: Stack) -> None:
    ids = [stack.publish(f"m-ret-{n}", path, "U4") for n, (path, *_) in enumerate(RETENTION)]
    traces = [stack.finished(i) for i in ids]
    for trace, (_, created, completed, _) in zip(traces, RETENTION, strict=True):
        age(stack.tracker, trace["id"], created=created, completed=completed, duration=1)
    assert stack.tracker.purge() == sum(purged for *_, purged in RETENTION)
    kept = [stack.trace(i).status_code == 200 for i in ids]
    assert kept == [not purged for *_, purged in RETENTION]


def test_the_polling_page_follows_a_trace_until_it_ends(stack: Stack, browser: Browser) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{stack.base}/trace?message_id=m-page")
        expect(page.locator("#status")).to_have_text("waiting for the message…")
        stack.publish("m-page", "/property/ok-page", "U5")
        expect(page.locator("#status")).to_have_text("success", timeout=15_000)
        expect(page.locator("#detail")).to_contain_text("Listing ok-page")
        stack.finished(stack.publish("m-page-gone", "/property/missing-page", "U5"))
        page.goto(f"{stack.base}/trace?message_id=m-page-gone")
        expect(page.locator("#status")).to_have_text("not_found", timeout=15_000)
    finally:
        page.close()


def test_the_mounted_dashboard_shows_a_trace_live(stack: Stack, browser: Browser) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{stack.base}/jobtrail/")
        live = stack.publish("m-live", "/property/flaky-live", "U6")  # retried for a while
        row = page.locator("#active tbody tr", has_text="property_scrape")
        expect(row).to_have_count(1, timeout=10_000)
        expect(row.locator(".js-status")).to_have_text("failed", timeout=15_000)
        href = row.locator("a").first.get_attribute("href")
        assert href == f"/jobtrail/jobs/{stack.finished(live)['id']}"
    finally:
        page.close()
