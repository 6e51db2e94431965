"""document_ingest over real HTTP: the uvicorn-served app, real Celery worker processes on a
real Redis broker, and a PostgreSQL store shared by them all."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from examples.document_ingest.__main__ import WORKER
from examples.launcher import Processes, free_port, processes

import jobtrail
from tests.conftest import TEMPLATE
from tests.servers import PostgresServer, RedisServer
from tests.waiting import until
from tests.webhook_receiver import serving

pytestmark = pytest.mark.postgres
DONE = {"FINISHED", "FAILED", "CANCELLED"}


@dataclass(frozen=True)
class Stack:
    """The running example: its base URL, its store and its processes."""

    base: str
    tracker: jobtrail.Tracker
    group: Processes

    def request(self, method: str, path: str, user: str, **kw: Any) -> httpx.Response:
        headers = {"X-User-Id": user}
        return httpx.request(method, f"{self.base}{path}", headers=headers, timeout=30, **kw)

    def post(self, user: str, name: str, document_type: str, **more: Any) -> dict[str, Any]:
        body = {"document_name": name, "document_type": document_type, **more}
        response = self.request("POST", "/api/v1/documents", user, json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def job(self, user: str, job_id: str) -> dict[str, Any]:
        response = self.request("GET", f"/api/v1/jobs/{job_id}", user)
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    def follow(self, user: str, job_id: str, stop: set[str], timeout: float = 60) -> list[Any]:
        """Every view of the job read until its status is in ``stop``."""
        seen: list[dict[str, Any]] = []

        def reached() -> bool:
            seen.append(self.job(user, job_id))
            return seen[-1]["status"] in stop

        until(reached, timeout, what=f"job {job_id} to reach {stop}")
        return seen

    def worker(self, queue: str) -> subprocess.Popen[bytes]:
        """A Celery worker process consuming ``queue``, once it is registered."""
        child = self.group.start(*WORKER, "-Q", queue, "-c", "1", "--pool", "threads")
        until(lambda: any(queue in (w.queues or ()) for w in self.tracker.workers()), 60)
        return child

    def events(self, job_id: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.base}/jobtrail/api/v1/jobs/{job_id}/events")
        events: list[dict[str, Any]] = response.json()["events"]
        return events


@pytest.fixture(scope="module")
def stack(postgres: PostgresServer, redis_server: RedisServer) -> Iterator[Stack]:
    url = postgres.create_database("document_ingest_example", template=TEMPLATE)
    broker = redis_server.url(3)
    redis.Redis.from_url(broker).flushdb()
    upstream = free_port()
    env = {
        "JOBTRAIL_DATABASE_URL": url,
        "JOBTRAIL_FLUSH_INTERVAL": "0.05",
        "JOBTRAIL_HEARTBEAT_INTERVAL": "1",
        "JOBTRAIL_WEBHOOK_ALLOW_PRIVATE": "true",  # the test's receiver is on loopback
        "DOCUMENT_INGEST_BROKER_URL": broker,
        "DOCUMENT_INGEST_UPSTREAM_URL": f"http://127.0.0.1:{upstream}",
    }
    tracker = jobtrail.Tracker(url)
    try:
        with processes(env) as group:
            group.serve("examples.document_ingest.upstream:app", upstream)
            base = group.serve("examples.document_ingest.app:app", free_port())
            stack = Stack(base, tracker, group)
            stack.worker("documents")
            yield stack
    finally:
        tracker.close()
        postgres.drop_database("document_ingest_example")


def test_a_document_is_ingested_stage_by_stage_with_rising_percentages(stack: Stack) -> None:
    created = stack.post("ana", "handbook-600.pdf", "pdf", metadata={"source": "upload"})
    assert (created["status"], created["percentage"]) == ("PENDING", 0.0)
    assert (created["priority"], created["user_id"]) == ("NORMAL", "ana")
    assert created["metadata"] == {"source": "upload"}
    seen = stack.follow("ana", created["id"], DONE)
    done = seen[-1]
    assert done["status"] == "FINISHED"
    assert done["percentage"] == 100.0
    assert done["summary"] == "stored 600 chunks of handbook-600.pdf as 64-dim vectors"
    assert done["duration_seconds"] > 0
    assert done["end_date"] >= done["start_date"]
    percentages = [v["percentage"] for v in seen]
    assert percentages == sorted(percentages)
    assert any(0 < p < 100 for p in percentages)
    assert "PROCESSING" in {v["status"] for v in seen}
    stages = [e["data"]["stage"] for e in stack.events(created["id"]) if e["type"] == "stage"]
    assert stages == ["download", "parse", "chunk", "embed", "store"]
    dashboard = httpx.get(f"{stack.base}/jobtrail/jobs", params={"kind": "ingest_document"})
    assert f'href="/jobtrail/jobs/{created["id"]}"' in dashboard.text


def test_the_uploaders_webhook_is_called_signed_when_each_of_its_documents_ends(
    stack: Stack,
) -> None:
    refused = stack.request("POST", "/api/v1/webhooks", "eve", json={"url": "ftp://example.com"})
    assert refused.status_code == 422
    assert "http" in refused.json()["detail"]
    other = stack.post("fay", "not-eve.txt", "txt")  # another uploader's: never sent to eve
    stack.follow("fay", other["id"], DONE)
    with serving() as receiver:
        answer = stack.request("POST", "/api/v1/webhooks", "eve", json={"url": receiver.url})
        assert answer.status_code == 201, answer.text
        receiver.secrets.append(answer.json()["secret"])
        ingested = stack.post("eve", "brief.txt", "txt")["id"]
        broken = stack.post("eve", "memo-corrupt.pdf", "pdf")["id"]
        expected = {(ingested, "job.succeeded"), (broken, "job.failed")}
        assert receiver.wait_for(lambda got: len(got) >= 2, timeout=60), receiver.accepted()
        got = receiver.accepted()
    assert {(r.job_id, r.type) for r in got} == expected
    assert receiver.unverified == 0
    assert all(r.verified_by for r in got)
    by_job = {r.job_id: r.body["data"]["job"] for r in got}
    assert by_job[ingested]["owner"] == "eve"
    assert by_job[broken]["error_message"]


def test_a_corrupt_document_fails_in_the_parse_stage_with_details(stack: Stack) -> None:
    created = stack.post("ana", "contract-corrupt.pdf", "pdf")
    done = stack.follow("ana", created["id"], DONE)[-1]
    assert done["status"] == "FAILED"
    assert done["error_details"]["stage"] == "parse"
    assert done["error_details"]["error"].startswith("UnicodeDecodeError")
    assert "tasks.py" in done["error_details"]["traceback"]


def test_a_transient_upstream_failure_shows_as_a_retry_not_a_failure(stack: Stack) -> None:
    created = stack.post("ana", "flaky-notes.txt", "txt")
    assert stack.follow("ana", created["id"], DONE)[-1]["status"] == "FINISHED"
    types = [e["type"] for e in stack.events(created["id"])]
    assert types.count("retrying") == 1
    assert "failed" not in types
    assert types.count("started") == 2


def test_a_pending_and_a_processing_job_are_cancelled(stack: Stack) -> None:
    long = stack.post("ben", "handbook-5000.pdf", "pdf")
    stack.follow("ben", long["id"], {"PROCESSING"})
    pending = stack.post("ben", "memo.txt", "txt")  # the only worker thread is busy
    answer = stack.request("POST", f"/api/v1/jobs/{pending['id']}/cancel", "ben")
    assert (answer.status_code, answer.json()["status"]) == (200, "CANCELLED")
    assert stack.request("POST", f"/api/v1/jobs/{long['id']}/cancel", "ben").status_code == 200
    stopped = stack.follow("ben", long["id"], DONE, timeout=30)[-1]
    assert stopped["status"] == "CANCELLED"
    assert stopped["percentage"] < 95
    again = stack.request("POST", f"/api/v1/jobs/{long['id']}/cancel", "ben")
    assert again.status_code == 409
    assert "CANCELLED" in again.json()["detail"]
    after = stack.post("ben", "after.txt", "txt")  # queued behind the cancelled one
    assert stack.follow("ben", after["id"], DONE)[-1]["status"] == "FINISHED"
    never = stack.job("ben", pending["id"])
    assert (never["status"], never["start_date"]) == ("CANCELLED", None)


def test_a_scan_waits_for_a_remote_worker_then_processes(stack: Stack) -> None:
    created = stack.post("cy", "scan-archive-400.png", "scan", priority="URGENT")
    assert created["status"] == "WAITING_FOR_REMOTE_WORKER"
    assert created["summary"] == "no worker consumes queue 'remote'"
    assert stack.job("cy", created["id"])["status"] == "WAITING_FOR_REMOTE_WORKER"
    remote = stack.worker("remote")
    try:
        seen = stack.follow("cy", created["id"], DONE)
    finally:
        stack.group.stop(remote)
    statuses = [v["status"] for v in seen]
    assert statuses[0] == "WAITING_FOR_REMOTE_WORKER"
    assert "PROCESSING" in statuses
    assert statuses[-1] == "FINISHED"
    assert statuses.index("PROCESSING") > statuses.index("WAITING_FOR_REMOTE_WORKER")


def test_filters_counts_and_statistics_match_hand_computed_values(stack: Stack) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    docs = [
        ("a.pdf", "pdf", "NORMAL"),
        ("b-corrupt.pdf", "pdf", "LOW"),
        ("c.docx", "docx", "HIGH"),
        ("d.docx", "docx", "URGENT"),
    ]
    ids = [stack.post("dee", n, t, priority=p)["id"] for n, t, p in docs]
    views = [stack.follow("dee", i, DONE)[-1] for i in ids]
    assert [v["status"] for v in views] == ["FINISHED", "FAILED", "FINISHED", "FINISHED"]

    def listed(**params: Any) -> tuple[list[str], int]:
        answer = stack.request("GET", "/api/v1/jobs", "dee", params=params).json()
        return [j["id"] for j in answer["jobs"]], answer["total_count"]

    assert listed() == (ids[::-1], 4)
    assert listed(status="FINISHED") == ([ids[3], ids[2], ids[0]], 3)
    assert listed(status="FAILED") == ([ids[1]], 1)
    assert listed(document_type="docx") == ([ids[3], ids[2]], 2)
    assert listed(priority="HIGH") == ([ids[2]], 1)
    assert listed(limit=2, offset=1) == ([ids[2], ids[1]], 4)
    assert listed(date_from=before.isoformat(), date_to=datetime.now(UTC).isoformat())[1] == 4
    assert listed(date_from=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == ([], 0)

    stats = stack.request("GET", "/api/v1/jobs/statistics", "dee").json()
    durations = [v["duration_seconds"] for v in views]
    assert stats == {
        "total_jobs": 4,
        "jobs_by_status": {"FINISHED": 3, "FAILED": 1},
        "jobs_by_type": {"pdf": 2, "docx": 2},
        "average_duration_seconds": pytest.approx(sum(durations) / 4),
        "success_rate": 0.75,
        "total_processing_time": pytest.approx(sum(durations)),
        "active_jobs": 0,
    }
    assert stack.request("GET", "/api/v1/jobs/active", "dee").json() == {
        "jobs": [],
        "total_count": 0,
    }


def test_another_users_job_is_not_found_and_bad_input_is_a_4xx(stack: Stack) -> None:
    created = stack.post("eve", "x.txt", "txt")
    for method, path in [("GET", ""), ("POST", "/cancel")]:
        answer = stack.request(method, f"/api/v1/jobs/{created['id']}{path}", "mallory")
        assert answer.status_code == 404
        assert "not found" in answer.json()["detail"]
    assert stack.request("GET", "/api/v1/jobs", "mallory").json()["total_count"] == 0
    for params in [{"status": "DONE"}, {"limit": 1001}, {"limit": 0}, {"offset": -1}]:
        assert stack.request("GET", "/api/v1/jobs", "eve", params=params).status_code == 422
    assert httpx.get(f"{stack.base}/api/v1/jobs").status_code == 422  # no X-User-Id
    bad = {"document_name": "../etc/passwd", "document_type": "pdf"}
    assert stack.request("POST", "/api/v1/documents", "eve", json=bad).status_code == 422


def test_cleanup_deletes_finished_jobs_older_than_the_given_days(stack: Stack) -> None:
    created = stack.post("fay", "old.txt", "txt")
    stack.follow("fay", created["id"], DONE)
    kept = stack.request("POST", "/api/v1/jobs/cleanup", "ops", params={"days": 30}).json()
    assert kept == {"deleted_count": 0}
    assert stack.job("fay", created["id"])["status"] == "FINISHED"
    purged = stack.request("POST", "/api/v1/jobs/cleanup", "ops", params={"days": 0}).json()
    assert purged["deleted_count"] >= 1
    assert stack.request("GET", f"/api/v1/jobs/{created['id']}", "fay").status_code == 404
