"""The REST API in process: the router in a FastAPI app, driven by Starlette's TestClient, on a
SQLite file and on PostgreSQL."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
import sqlalchemy as sa
from fastapi import FastAPI, HTTPException
from prometheus_client.parser import text_string_to_metric_families
from pydantic import TypeAdapter
from starlette.requests import HTTPConnection

from jobtrail import Tracker
from jobtrail.exceptions import InvalidOwner, MissingExtra
from jobtrail.integrations.ratelimit import Limiter
from jobtrail.jobs import ScheduleInfo
from jobtrail.web import Principal, create_app, create_router
from tests.apps.api_handlers import register
from tests.reliability.harness import SCALE
from tests.waiting import until

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

# Starlette 1.x deprecates driving its TestClient with httpx (it wants the httpx2 fork) and
# warns once, when ``starlette.testclient`` is first imported; that import happens in
# ``open_client`` below, inside a test, where this filter applies.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Using `httpx` with `starlette.testclient` is deprecated"
    ":starlette.exceptions.StarletteDeprecationWarning"
)

API = "/api/v1"
BODY_LIMIT = 2048


def open_client(app: FastAPI, *, raise_server_exceptions: bool = True) -> TestClient:
    """A TestClient for ``app`` (use it as a context manager to run the app's lifespan)."""
    from fastapi.testclient import TestClient

    return TestClient(app, raise_server_exceptions=raise_server_exceptions)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Api:
    """A client of the app, and the headers of three tokens: an admin, owner A and owner B."""

    tracker: Tracker
    client: TestClient
    admin: dict[str, str]
    alice: dict[str, str]
    bob: dict[str, str]

    def external(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        """Create an external job; it must answer 201."""
        response = self.client.post(f"{API}/jobs/external", json=body, headers=headers)
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    def patch(self, job_id: str, headers: dict[str, str], **body: Any) -> httpx.Response:
        response: httpx.Response = self.client.patch(
            f"{API}/jobs/{job_id}", json=body, headers=headers
        )
        return response

    def job(self, job_id: str) -> dict[str, Any]:
        """The job as the admin sees it."""
        response = self.client.get(f"{API}/jobs/{job_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def events(self, job_id: str) -> list[dict[str, Any]]:
        response = self.client.get(f"{API}/jobs/{job_id}/events", headers=self.admin)
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    def wait_until_finished(self, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
        def finished() -> dict[str, Any]:
            job = self.job(job_id)
            return job if job["status"] in ("succeeded", "partial", "failed", "cancelled") else {}

        return until(finished, timeout, what=f"job {job_id} to finish")


@pytest.fixture
def api_tracker(database_url: str) -> Iterator[Tracker]:
    """A tracker with the test kinds, a fast worker poll and a small body limit."""
    with Tracker(
        database_url, flush_interval=0.02, poll_interval=0.02, max_body_bytes=BODY_LIMIT
    ) as tracker:
        yield register(tracker)


def _api(tracker: Tracker, client: TestClient) -> Api:
    return Api(
        tracker,
        client,
        admin=bearer(tracker.ops.create_token("admin", None)),
        alice=bearer(tracker.ops.create_token("alice", "A")),
        bob=bearer(tracker.ops.create_token("bob", "B")),
    )


@pytest.fixture
def api(api_tracker: Tracker) -> Iterator[Api]:
    """The standalone app without a worker: submitted jobs stay queued."""
    with open_client(create_app(api_tracker, run_worker=False)) as client:
        yield _api(api_tracker, client)


@pytest.fixture
def served(api_tracker: Tracker) -> Iterator[Api]:
    """The standalone app with its embedded worker running (started by the app's lifespan)."""
    with open_client(create_app(api_tracker, concurrency=2)) as client:
        yield _api(api_tracker, client)


def later() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


# -- submitted jobs -------------------------------------------------------------------------


def test_a_submitted_job_runs_in_the_apps_worker_and_is_readable_over_http(served: Api) -> None:
    body = {"kind": "greet", "payload": {"name": "Ada"}, "owner": "A"}
    response = served.client.post(f"{API}/jobs", json=body, headers=served.alice)
    assert response.status_code == 202, response.text
    submitted = response.json()
    assert set(submitted) == {"job_id", "status", "status_url"}
    assert submitted["status"] == "queued"
    job_id = submitted["job_id"]
    assert submitted["status_url"].endswith(f"{API}/jobs/{job_id}")

    job = served.wait_until_finished(job_id)
    assert job["status"] == "succeeded"
    assert job["result"] == {"greeting": "hello Ada"}
    assert job["owner"] == "A"
    assert job["trigger"] == "api"
    assert job["payload"] == {"name": "Ada"}
    assert job["duration_seconds"] is not None
    assert job["duration_seconds"] >= 0
    via_status_url = served.client.get(submitted["status_url"], headers=served.alice)
    assert via_status_url.json() == job

    progress = served.client.get(f"{API}/jobs/{job_id}/progress", headers=served.alice).json()
    assert set(progress) == {
        "job_id",
        "status",
        "progress",
        "stage",
        "wait_reason",
        "message",
        "items_total",
        "items_done",
        "items_succeeded",
        "items_failed",
        "eta_seconds",
        "updated_at",
    }
    assert progress["job_id"] == job_id
    assert progress["status"] == "succeeded"
    assert progress["progress"] == 100.0
    assert progress["message"] == "greeting Ada"

    events = served.events(job_id)
    types = [e["type"] for e in events]
    assert types[0] == "created"
    assert types[-1] == "succeeded"
    assert "started" in types
    assert {"type": "progress", "message": "greeting Ada"}.items() <= next(
        e for e in events if e["type"] == "progress"
    ).items()
    assert events[0]["actor"] == "alice"
    ids = [e["id"] for e in events]
    assert ids == sorted(ids)
    page = served.client.get(
        f"{API}/jobs/{job_id}/events", params={"after": ids[0], "limit": 1}, headers=served.alice
    ).json()
    assert [e["id"] for e in page["events"]] == ids[1:2]
    assert page["next_after"] == ids[1]


def test_a_job_with_failing_items_ends_partial_and_its_retry_is_a_new_linked_job(
    served: Api,
) -> None:
    body = {"kind": "batch", "payload": {"items": ["a", "b", "c"], "failing": ["b"]}}
    job_id = served.client.post(f"{API}/jobs", json=body, headers=served.admin).json()["job_id"]
    job = served.wait_until_finished(job_id)
    assert job["status"] == "partial"
    assert (job["items_total"], job["items_succeeded"], job["items_failed"]) == (3, 2, 1)
    assert "item_failed" in [e["type"] for e in served.events(job_id)]

    response = served.client.post(f"{API}/jobs/{job_id}/retry", headers=served.admin)
    assert response.status_code == 201, response.text
    retry = response.json()
    assert retry["id"] != job_id
    assert retry["retry_of"] == job_id
    assert retry["trigger"] == "retry"
    assert served.wait_until_finished(retry["id"])["status"] == "partial"


def test_a_running_job_cancelled_over_http_stops_and_records_who_asked(served: Api) -> None:
    body = {"kind": "hold", "payload": {"seconds": 30}}
    job_id = served.client.post(f"{API}/jobs", json=body, headers=served.admin).json()["job_id"]
    until(lambda: served.job(job_id)["status"] == "running", 15, what="the job to start")

    response = served.client.post(f"{API}/jobs/{job_id}/cancel", headers=served.admin)
    assert response.status_code == 202, response.text
    assert response.json()["cancel_requested"] is True

    job = served.wait_until_finished(job_id, timeout=10)
    assert job["status"] == "cancelled"
    requested = [e for e in served.events(job_id) if e["type"] == "cancel_requested"]
    assert [e["actor"] for e in requested] == ["admin"]
    again = served.client.post(f"{API}/jobs/{job_id}/cancel", headers=served.admin)
    assert again.status_code == 409


def test_submitting_an_existing_key_answers_200_with_the_existing_job(api: Api) -> None:
    first = api.client.post(
        f"{API}/jobs",
        json={"kind": "greet", "payload": {"name": "first"}, "key": "msg-1"},
        headers=api.alice,
    )
    assert first.status_code == 202
    again = api.client.post(
        f"{API}/jobs",
        json={"kind": "greet", "payload": {"name": "second"}, "key": "msg-1"},
        headers=api.alice,
    )
    assert again.status_code == 200, again.text
    existing = again.json()
    assert existing["id"] == first.json()["job_id"]
    assert existing["key"] == "msg-1"
    assert existing["payload"] == {"name": "first"}
    listed = api.client.get(f"{API}/jobs", params={"kind": "greet"}, headers=api.admin).json()
    assert listed["total_count"] == 1


def test_an_unknown_kind_is_refused_with_422_naming_the_registered_kinds(api: Api) -> None:
    response = api.client.post(f"{API}/jobs", json={"kind": "nope"}, headers=api.admin)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "nope" in detail
    assert "greet" in detail
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 0


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        pytest.param({}, "name", id="missing-argument"),
        pytest.param({"name": "x", "colour": "red"}, "colour", id="unexpected-argument"),
    ],
)
def test_a_payload_that_does_not_fit_the_handler_is_refused_with_422(
    api: Api, payload: dict[str, Any], complaint: str
) -> None:
    body = {"kind": "greet", "payload": payload}
    response = api.client.post(f"{API}/jobs", json=body, headers=api.admin)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "greet" in detail
    assert complaint in detail
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 0


# -- external jobs --------------------------------------------------------------------------


def test_an_external_job_reports_progress_items_and_its_end_with_patch(api: Api) -> None:
    job = api.external(
        api.alice, kind="export", items_total=10, message="starting", labels={"source": "cron"}
    )
    job_id = job["id"]
    assert (job["status"], job["owner"], job["trigger"]) == ("running", "A", "external")
    assert job["labels"] == {"source": "cron"}
    assert job["started_at"] is not None

    response = api.patch(job_id, api.alice, progress=15, message="reading")
    assert response.status_code == 200, response.text
    assert (response.json()["progress"], response.json()["message"]) == (15, "reading")
    response = api.patch(job_id, api.alice, items_succeeded=3, items_failed=1)
    assert response.status_code == 200, response.text
    counted = response.json()
    assert (counted["items_done"], counted["progress"]) == (4, 40.0)
    api.patch(job_id, api.alice, progress_data={"stage": "write"})

    progress = api.client.get(f"{API}/jobs/{job_id}/progress", headers=api.alice).json()
    assert progress["status"] == "running"
    assert progress["message"] == "reading"
    assert (progress["items_total"], progress["items_done"]) == (10, 4)
    assert (progress["items_succeeded"], progress["items_failed"]) == (3, 1)
    assert api.job(job_id)["progress_data"] == {"stage": "write"}

    done = api.patch(job_id, api.alice, status="succeeded", result={"rows": 3})
    assert done.status_code == 200, done.text
    finished = done.json()
    assert finished["status"] == "succeeded"
    assert finished["result"] == {"rows": 3}
    assert finished["completed_at"] is not None
    assert finished["duration_seconds"] >= 0

    late = api.patch(job_id, api.alice, message="too late")
    assert late.status_code == 409
    assert "succeeded" in late.json()["detail"]
    assert api.patch(job_id, api.alice, status="running").status_code == 409
    assert api.job(job_id)["message"] == "reading"

    events = api.events(job_id)
    assert [e["type"] for e in events if e["type"] in ("progress", "succeeded")] == [
        "progress",
        "succeeded",
    ]
    assert all(e["actor"] == "alice" for e in events if e["type"] in ("progress", "succeeded"))


def test_an_illegal_transition_of_an_external_job_answers_409(api: Api) -> None:
    queued = api.external(api.admin, kind="export", status="queued")["id"]
    refused = api.patch(queued, api.admin, status="succeeded")
    assert refused.status_code == 409
    assert "queued" in refused.json()["detail"]
    assert api.job(queued)["status"] == "queued"

    running = api.external(api.admin, kind="export")["id"]
    failed = api.patch(
        running,
        api.admin,
        status="failed",
        error_message="upstream said no",
        error_details={"password": "hunter2", "step": 3},
    )
    assert failed.status_code == 200, failed.text
    assert failed.json()["error_message"] == "upstream said no"
    assert "hunter2" not in failed.text
    assert failed.json()["error_details"]["step"] == 3
    assert api.patch(running, api.admin, status="queued").status_code == 409
    assert api.job(running)["status"] == "failed"


def test_an_external_job_moves_through_every_legal_state_with_patch(api: Api) -> None:
    job_id = api.external(api.admin, kind="export", status="queued")["id"]
    for status in ("waiting", "running", "queued", "running", "waiting", "running", "partial"):
        response = api.patch(job_id, api.admin, status=status, message=f"now {status}")
        assert response.status_code == 200, (status, response.text)
        assert response.json()["status"] == status
    assert api.job(job_id)["started_at"] is not None
    assert api.events(job_id)[-1]["type"] == "partial"


# -- owners ---------------------------------------------------------------------------------

HIDDEN_ENDPOINTS = [
    pytest.param("GET", "/jobs/{id}", None, "live", id="get"),
    pytest.param("GET", "/jobs/{id}/progress", None, "live", id="progress"),
    pytest.param("GET", "/jobs/{id}/events", None, "live", id="events"),
    pytest.param("GET", "/jobs/{id}/stream", None, "done", id="stream"),
    pytest.param("POST", "/jobs/{id}/cancel", None, "live", id="cancel"),
    pytest.param("POST", "/jobs/{id}/retry", None, "done", id="retry"),
    pytest.param("PATCH", "/jobs/{id}", {"message": "hijacked"}, "live", id="patch"),
]


@pytest.mark.parametrize(("method", "path", "body", "which"), HIDDEN_ENDPOINTS)
def test_another_owners_job_answers_exactly_like_a_missing_one(
    api: Api, method: str, path: str, body: dict[str, Any] | None, which: str
) -> None:
    jobs = {
        "live": api.external(api.alice, kind="export", message="working")["id"],
        "done": api.external(api.alice, kind="export")["id"],
    }
    assert api.patch(jobs["done"], api.alice, status="failed").status_code == 200
    job_id, missing = jobs[which], str(uuid.uuid4())
    assert len(missing) == len(job_id)

    hidden = api.client.request(method, API + path.format(id=job_id), json=body, headers=api.bob)
    absent = api.client.request(method, API + path.format(id=missing), json=body, headers=api.bob)

    assert absent.status_code == 404
    assert hidden.status_code == 404
    assert hidden.content == absent.content.replace(missing.encode(), job_id.encode())
    assert hidden.headers["content-type"] == absent.headers["content-type"]
    live, done = api.job(jobs["live"]), api.job(jobs["done"])
    assert (live["status"], live["cancel_requested"], live["message"]) == (
        "running",
        False,
        "working",
    )
    assert done["status"] == "failed"
    everything = api.client.get(f"{API}/jobs", headers=api.admin).json()
    assert everything["total_count"] == 2
    if method == "GET":
        assert api.client.request(
            method, API + path.format(id=job_id), headers=api.alice
        ).is_success


def test_an_owner_token_lists_and_counts_only_its_own_jobs(api: Api) -> None:
    mine = {api.external(api.alice, kind="export")["id"] for _ in range(2)}
    queued = api.client.post(
        f"{API}/jobs", json={"kind": "greet", "payload": {"name": "a"}}, headers=api.alice
    ).json()["job_id"]
    mine.add(queued)
    theirs = {api.external(api.bob, kind="export")["id"] for _ in range(3)}
    finished = next(iter(theirs))
    assert api.patch(finished, api.bob, status="succeeded").status_code == 200

    def ids(headers: dict[str, str], path: str = "/jobs", **params: str) -> set[str]:
        response = api.client.get(API + path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        return {j["id"] for j in (body if isinstance(body, list) else body["jobs"])}

    assert ids(api.alice) == mine
    assert ids(api.alice, owner="B") == set()
    assert ids(api.alice, "/jobs/active") == mine
    assert ids(api.bob) == theirs
    assert ids(api.bob, "/jobs/active") == theirs - {finished}
    assert ids(api.admin) == mine | theirs
    assert ids(api.admin, owner="B") == theirs
    listed = api.client.get(f"{API}/jobs", params={"limit": 2}, headers=api.alice).json()
    assert (listed["total_count"], listed["limit"], listed["offset"]) == (3, 2, 0)
    assert len(listed["jobs"]) == 2

    def stats(headers: dict[str, str], **params: str) -> dict[str, Any]:
        response = api.client.get(f"{API}/stats", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    assert stats(api.alice)["total_jobs"] == 3
    assert stats(api.alice)["jobs_by_status"] == {"running": 2, "queued": 1}
    assert stats(api.alice, owner="B")["total_jobs"] == 0
    assert stats(api.bob)["jobs_by_status"] == {"running": 2, "succeeded": 1}
    assert stats(api.admin)["total_jobs"] == 6
    assert stats(api.admin, owner="B")["total_jobs"] == 3


def test_an_owner_token_cannot_create_jobs_for_another_owner(api: Api) -> None:
    submit = {"kind": "greet", "payload": {"name": "x"}, "owner": "B"}
    refused = api.client.post(f"{API}/jobs", json=submit, headers=api.alice)
    assert refused.status_code == 403
    assert "B" in refused.json()["detail"]
    external = api.client.post(
        f"{API}/jobs/external", json={"kind": "export", "owner": "B"}, headers=api.alice
    )
    assert external.status_code == 403
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 0

    own = api.client.post(
        f"{API}/jobs", json={"kind": "greet", "payload": {"name": "x"}}, headers=api.alice
    )
    assert api.job(own.json()["job_id"])["owner"] == "A"
    assert api.external(api.alice, kind="export", owner="A")["owner"] == "A"
    assert api.external(api.admin, kind="export", owner="B")["owner"] == "B"


def _token_with_an_empty_owner(tracker: Tracker, database_url: str) -> dict[str, str]:
    """A token whose owner is "" (``create_token`` refuses one now; older stores may hold
    one), written into the store directly."""
    with pytest.raises(InvalidOwner):
        tracker.ops.create_token("nobody", "")
    secret = tracker.ops.create_token("nobody", "placeholder")
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE tokens SET owner = '' WHERE name = 'nobody'"))
    finally:
        engine.dispose()
    found = tracker.ops.find_token(secret)
    assert found is not None
    assert found.owner == ""
    return bearer(secret)


def test_a_token_whose_owner_is_empty_is_scoped_to_that_owner_everywhere(
    api: Api, database_url: str
) -> None:
    nobody = _token_with_an_empty_owner(api.tracker, database_url)
    theirs = api.external(api.alice, kind="export")["id"]

    def listed(path: str, **params: str) -> Any:
        response = api.client.get(API + path, params=params, headers=nobody)
        assert response.status_code == 200, response.text
        return response.json()

    assert listed("/jobs")["total_count"] == 0
    assert listed("/jobs", owner="A")["total_count"] == 0
    assert listed("/jobs/active") == []
    assert listed("/stats")["total_jobs"] == 0
    assert listed("/stats", owner="A")["total_jobs"] == 0
    assert api.client.get(f"{API}/jobs/{theirs}", headers=nobody).status_code == 404
    with api.client.websocket_connect(f"{API}/ws", headers=nobody) as socket:
        mine = api.external(nobody, kind="export")
        assert mine["owner"] == ""
        api.patch(theirs, api.alice, message="not for nobody")
        api.patch(mine["id"], nobody, status="succeeded")
        seen = [socket.receive_json()]
        while seen[-1]["status"] != "succeeded":
            seen.append(socket.receive_json())
    assert {j["id"] for j in seen} == {mine["id"]}
    assert api.client.get(f"{API}/metrics", headers=nobody).status_code == 403


def test_the_key_of_another_owners_job_is_another_key_and_reveals_nothing(api: Api) -> None:
    body = {"kind": "greet", "payload": {"name": "x"}, "key": "shared-key"}
    theirs = api.client.post(f"{API}/jobs", json=body, headers=api.alice).json()["job_id"]

    response = api.client.post(f"{API}/jobs", json=body, headers=api.bob)

    assert response.status_code == 202, response.text
    mine = response.json()["job_id"]
    assert mine != theirs
    assert theirs not in response.text
    assert api.job(mine)["owner"] == "B"
    again = api.client.post(f"{API}/jobs", json=body, headers=api.bob)
    assert (again.status_code, again.json()["id"]) == (200, mine)
    assert api.client.get(f"{API}/jobs/{theirs}", headers=api.bob).status_code == 404


def test_an_external_job_with_the_key_of_another_owners_job_is_a_new_job(api: Api) -> None:
    theirs = api.external(api.alice, kind="export", key="shared-key")["id"]

    response = api.client.post(
        f"{API}/jobs/external", json={"kind": "export", "key": "shared-key"}, headers=api.bob
    )

    assert response.status_code == 201, response.text
    assert response.json()["id"] != theirs
    assert response.json()["owner"] == "B"
    assert theirs not in response.text


@pytest.mark.parametrize("key", ["schedule:nightly:2030-01-01T00:00", "celery:4f1c", "celery:"])
def test_keys_with_a_prefix_jobtrail_makes_keys_with_are_refused_with_422(
    api: Api, key: str
) -> None:
    submit = {"kind": "greet", "payload": {"name": "x"}, "key": key}
    for path, body in [("/jobs", submit), ("/jobs/external", {"kind": "export", "key": key})]:
        response = api.client.post(API + path, json=body, headers=api.admin)
        assert response.status_code == 422, (path, response.text)
        assert "reserved" in str(response.json()["detail"])
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 0


def test_cancel_and_retry_record_the_token_name_as_the_actor(api: Api) -> None:
    body = {"kind": "greet", "payload": {"name": "x"}, "run_after": later()}
    job_id = api.client.post(f"{API}/jobs", json=body, headers=api.alice).json()["job_id"]
    assert api.client.post(f"{API}/jobs/{job_id}/retry", headers=api.alice).status_code == 409

    cancelled = api.client.post(f"{API}/jobs/{job_id}/cancel", headers=api.alice)
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert api.client.post(f"{API}/jobs/{job_id}/cancel", headers=api.alice).status_code == 409
    [event] = [e for e in api.events(job_id) if e["type"] == "cancelled"]
    assert event["actor"] == "alice"

    retried = api.client.post(f"{API}/jobs/{job_id}/retry", headers=api.admin)
    assert retried.status_code == 201, retried.text
    new = retried.json()
    assert (new["retry_of"], new["status"], new["owner"]) == (job_id, "queued", "A")
    assert api.events(new["id"])[0]["actor"] == "admin"
    [note] = [e for e in api.events(job_id) if e["type"] == "log"]
    assert note["actor"] == "admin"
    assert new["id"] in note["message"]


# -- the dashboard's cookie: origins, sign-in and page headers ------------------------------

OWN = "http://testserver"


def _cookie_client(api: Api, headers: dict[str, str]) -> TestClient:
    """The app's client carrying the dashboard cookie of the token in ``headers``."""
    api.client.cookies.set("jobtrail_token", headers["Authorization"].removeprefix("Bearer "))
    return api.client


@pytest.mark.parametrize(
    "foreign",
    [
        pytest.param({"Origin": "http://testserver:8081"}, id="another-port"),
        pytest.param({"Origin": "https://testserver"}, id="another-scheme"),
        pytest.param({"Origin": "http://evil.example"}, id="another-host"),
        pytest.param({"Origin": "null"}, id="opaque"),
        pytest.param({}, id="no-origin"),
        pytest.param({"Origin": OWN, "Sec-Fetch-Site": "same-site"}, id="same-site-fetch"),
    ],
)
def test_a_cross_origin_change_with_the_cookie_is_refused_and_changes_nothing(
    api: Api, foreign: dict[str, str]
) -> None:
    job_id = api.external(api.alice, kind="export")["id"]
    client = _cookie_client(api, api.alice)

    for method, path in [("POST", f"/jobs/{job_id}/cancel"), ("PATCH", f"/jobs/{job_id}")]:
        body = {"message": "forged"} if method == "PATCH" else None
        response = client.request(method, API + path, json=body, headers=foreign)
        assert response.status_code == 403, (method, response.text)
        assert "cross-origin" in response.json()["detail"]
    job = api.job(job_id)
    assert (job["status"], job["cancel_requested"], job["message"]) == ("running", False, None)

    same = client.post(f"{API}/jobs/{job_id}/cancel", headers={"Origin": OWN})
    assert same.status_code == 202, same.text
    assert client.get(f"{API}/jobs/{job_id}", headers=foreign).status_code == 200  # reads: no


def test_a_bearer_token_needs_no_origin_and_allowed_origins_may_use_the_cookie(
    database_url: str,
) -> None:
    with Tracker(database_url, allowed_origins=["https://jobs.example.com"]) as tracker:
        register(tracker)
        with open_client(create_app(tracker, run_worker=False)) as client:
            api = _api(tracker, client)
            job_id = api.external(api.admin, kind="export")["id"]
            foreign = {"Origin": "http://evil.example"}
            assert api.patch(job_id, api.admin | foreign, message="by bearer").status_code == 200
            cookie = _cookie_client(api, api.admin)
            proxied = cookie.post(
                f"{API}/jobs/{job_id}/cancel", headers={"Origin": "https://jobs.example.com"}
            )
            assert proxied.status_code == 202, proxied.text


def test_a_websocket_with_the_cookie_from_another_origin_is_refused(api: Api) -> None:
    from starlette.websockets import WebSocketDisconnect

    client = _cookie_client(api, api.alice)
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(f"{API}/ws", headers={"Origin": "http://testserver:8081"}) as ws,
    ):
        ws.receive_json()
    assert refused.value.code == 4403
    with client.websocket_connect(f"{API}/ws", headers={"Origin": OWN}) as socket:
        job = api.external(api.alice, kind="export")
        assert socket.receive_json()["id"] == job["id"]


def test_sign_in_from_another_site_is_refused_and_sets_no_cookie(api: Api) -> None:
    secret = api.alice["Authorization"].removeprefix("Bearer ")
    form = {"token": secret}
    forged = api.client.post(
        "/login", data=form, headers={"Origin": "http://evil.example"}, follow_redirects=False
    )
    assert forged.status_code == 403
    assert "another site" in forged.text
    assert "set-cookie" not in forged.headers

    own = api.client.post("/login", data=form, headers={"Origin": OWN}, follow_redirects=False)
    assert own.status_code == 303
    assert "jobtrail_token=" in own.headers["set-cookie"]


def test_sign_out_is_a_post_from_the_dashboard_only(api: Api) -> None:
    client = _cookie_client(api, api.alice)
    assert client.get("/logout", follow_redirects=False).status_code == 405
    assert client.post("/logout", headers={"Origin": "http://evil.example"}).status_code == 403
    page = client.get("/")
    assert 'action="/logout"' in page.text
    assert 'href="/logout"' not in page.text
    out = client.post("/logout", headers={"Origin": OWN}, follow_redirects=False)
    assert out.status_code == 303
    assert 'jobtrail_token=""' in out.headers["set-cookie"]


def test_every_dashboard_response_forbids_frames_inline_scripts_and_sniffing(api: Api) -> None:
    client = _cookie_client(api, api.admin)
    job_id = api.external(api.admin, kind="export", message="<script>x</script>")["id"]
    for path in ["/", "/jobs", f"/jobs/{job_id}", "/jobs/missing", "/stats", "/schedules"]:
        response = client.get(path)
        assert response.status_code in (200, 404), path
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy, path
        assert "frame-ancestors 'none'" in policy, path
        assert "unsafe-inline" not in policy, path
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "same-origin", path
        assert " style=" not in response.text, path  # the policy would block them
        assert " onchange=" not in response.text, path
    client.cookies.clear()
    login = client.get("/login")
    assert "frame-ancestors 'none'" in login.headers["content-security-policy"]


def test_failed_sign_ins_and_unknown_tokens_are_rate_limited_per_address(
    database_url: str,
) -> None:
    with Tracker(database_url, auth_rate_limit="3/minute") as tracker:
        good = bearer(tracker.ops.create_token("ops", None))
        with open_client(create_app(tracker, run_worker=False)) as client:
            wrong = [
                client.get(f"{API}/jobs", headers=bearer(f"jt_guess{n}")).status_code
                for n in range(2)
            ]
            attempt = client.post("/login", data={"token": "jt_guess"}, headers={"Origin": OWN})
            assert (wrong, attempt.status_code) == ([401, 401], 401)
            throttled = client.get(f"{API}/jobs", headers=bearer("jt_guess3"))
            assert throttled.status_code == 429
            assert int(throttled.headers["retry-after"]) >= 1
            # past the limit even a right token waits: a guess that happens to be right
            # must not be told apart
            assert client.get(f"{API}/jobs", headers=good).status_code == 429
            login = client.post("/login", data={"token": "jt_x"}, headers={"Origin": OWN})
            assert login.status_code == 429
            assert "retry-after" in login.headers
            assert client.get(f"{API}/health").status_code == 200


# -- authentication, limits and bad input ---------------------------------------------------

PROTECTED = [
    ("POST", "/jobs"),
    ("POST", "/jobs/external"),
    ("PATCH", "/jobs/some-id"),
    ("GET", "/jobs/some-id"),
    ("GET", "/jobs/some-id/progress"),
    ("GET", "/jobs/some-id/events"),
    ("GET", "/jobs"),
    ("GET", "/jobs/active"),
    ("POST", "/jobs/some-id/cancel"),
    ("POST", "/jobs/some-id/retry"),
    ("GET", "/stats"),
    ("GET", "/jobs/some-id/stream"),
    ("GET", "/stream"),
    ("GET", "/schedules"),
    ("POST", "/schedules/nightly/run"),
    ("GET", "/metrics"),
]


def test_every_endpoint_but_health_refuses_a_missing_token_with_401(
    api: Api,
) -> None:
    for method, path in PROTECTED:
        response = api.client.request(method, API + path, json={"kind": "greet"})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"] == "missing bearer token"
    health = api.client.get(f"{API}/health")
    assert health.status_code == 200
    assert (health.json()["status"], health.json()["store"]) == ("ok", "ok")


def test_forged_and_revoked_tokens_are_refused_with_401(api: Api) -> None:
    for header in ("Bearer jt_forged", "Bearer ", "Basic YWRtaW46YWRtaW4=", "jt_no_scheme"):
        response = api.client.get(f"{API}/jobs", headers={"Authorization": header})
        assert response.status_code == 401, header
    assert api.client.get(f"{API}/jobs", headers=api.bob).status_code == 200

    assert api.tracker.ops.revoke_token("bob")

    response = api.client.get(f"{API}/jobs", headers=api.bob)
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid or revoked token"
    assert api.client.get(f"{API}/jobs", headers=api.alice).status_code == 200


def test_a_body_declared_over_the_limit_is_refused_with_413(api: Api) -> None:
    body = {"kind": "greet", "payload": {"name": "x" * BODY_LIMIT}}
    response = api.client.post(f"{API}/jobs", json=body, headers=api.admin)
    assert response.status_code == 413
    assert str(BODY_LIMIT) in response.json()["detail"]
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 0


def test_a_chunked_body_over_the_limit_is_refused_with_413(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "greet", "payload": {"name": "'
        for _ in range(BODY_LIMIT // 256 + 1):
            yield b"x" * 256
        yield b'"}}'

    headers = api.admin | {"Content-Type": "application/json"}
    response = api.client.post(f"{API}/jobs", content=chunks(), headers=headers)

    assert response.status_code == 413, response.text
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 0


def test_a_token_over_its_rate_limit_gets_429_with_retry_after(api_tracker: Tracker) -> None:
    app = FastAPI()
    app.include_router(create_router(api_tracker, rate_limit="5/second"), prefix=API)
    alice = bearer(api_tracker.ops.create_token("alice", "A"))
    bob = bearer(api_tracker.ops.create_token("bob", "B"))
    with open_client(app) as client:
        codes = [client.get(f"{API}/jobs", headers=alice).status_code for _ in range(5)]
        throttled = client.get(f"{API}/jobs", headers=alice)
        assert codes == [200] * 5
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) >= 1
        assert "rate limit" in throttled.json()["detail"]
        assert client.get(f"{API}/jobs", headers=bob).status_code == 200
        assert client.get(f"{API}/health").status_code == 200


BAD_FILTERS = [
    ("/jobs?limit=0", "limit"),
    ("/jobs?limit=5000", "limit"),
    ("/jobs?limit=ten", "limit"),
    ("/jobs?offset=-1", "offset"),
    ("/jobs?status=bogus", "status"),
    ("/jobs?status=queued&status=bogus", "status"),
    ("/jobs?priority=bogus", "priority"),
    ("/jobs?created_from=yesterday", "created_from"),
    ("/jobs/some-id/events?after=-1", "after"),
    ("/jobs/some-id/events?limit=0", "limit"),
    ("/stats?days=0", "days"),
    ("/jobs/" + "x" * 65, "job_id"),
]


def test_bad_filters_are_refused_with_422_naming_the_parameter(api: Api) -> None:
    for path, field in BAD_FILTERS:
        response = api.client.get(API + path, headers=api.admin)
        assert response.status_code == 422, (path, response.text)
        assert any(field in error["loc"] for error in response.json()["detail"]), path


MALFORMED_BODIES = [
    ("POST", "/jobs", b'{"kind": "greet", '),
    ("POST", "/jobs", b'["greet"]'),
    ("POST", "/jobs", b'{"kind": "greet", "payload": [1, 2]}'),
    ("POST", "/jobs", b'{"kind": "greet", "priority": "asap"}'),
    ("POST", "/jobs", b'{"kind": "greet", "surprise": 1}'),
    ("POST", "/jobs/external", b'{"kind": ""}'),
    ("POST", "/jobs/external", b'{"kind": "x", "items_total": -1}'),
    ("PATCH", "/jobs/some-id", b'{"progress": 150}'),
    ("PATCH", "/jobs/some-id", b'{"status": "finished"}'),
    ("PATCH", "/jobs/some-id", b"not json"),
]


def test_malformed_bodies_are_refused_with_422(api: Api) -> None:
    headers = api.admin | {"Content-Type": "application/json"}
    for method, path, content in MALFORMED_BODIES:
        response = api.client.request(method, API + path, content=content, headers=headers)
        assert response.status_code == 422, (method, path, content, response.text)
        assert response.json()["detail"], content
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 0


TRICKS = [
    "/jobs/..%2F..%2Fetc",
    "/jobs/..%2F..%2Fetc/events",
    "/jobs/%2e%2e",
    "/jobs/%2e%2e/cancel",
    "/jobs/a%00b",
    "/jobs/%ff%fe",
    "/jobs/%F0%9F%92%A5",
    "/jobs/..;",
    "/jobs/%252e%252e%252f",
    "/jobs/x/events?after=99999999999999999999999",
    "/jobs?created_from=9999-99-99",
    "/jobs?q=%27%22--%3B",
    "/stream?status=bogus",
]


def test_path_and_query_tricks_never_answer_5xx(api: Api) -> None:
    answers = {
        (method, path): api.client.request(method, API + path, headers=api.admin).status_code
        for path in TRICKS
        for method in ("GET", "POST")
    }
    assert {key: code for key, code in answers.items() if code >= 500} == {}
    assert set(answers.values()) <= {200, 404, 405, 422}


NUL = "a\x00b"
TOO_BIG = 2**40


def test_text_with_nul_characters_or_counts_beyond_32_bits_never_answer_5xx(api: Api) -> None:
    """Bad input is refused with a 4xx (or stored); it never looks like a broken server."""
    job_id = api.external(api.admin, kind="export")["id"]
    requests: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None]] = [
        ("POST", "/jobs/external", {"kind": NUL}, None),
        ("POST", "/jobs/external", {"kind": "x", "owner": NUL}, None),
        ("POST", "/jobs/external", {"kind": "x", "key": NUL}, None),
        ("POST", "/jobs/external", {"kind": "x", "message": NUL}, None),
        ("POST", "/jobs/external", {"kind": "x", "payload": {"k": NUL}}, None),
        ("POST", "/jobs/external", {"kind": "x", "payload": {NUL: 1}}, None),
        ("POST", "/jobs/external", {"kind": "x", "labels": {"k": NUL}}, None),
        ("POST", "/jobs/external", {"kind": "x", "items_total": TOO_BIG}, None),
        ("POST", "/jobs", {"kind": "greet", "payload": {"name": NUL}}, None),
        ("POST", "/jobs", {"kind": "greet", "payload": {"name": "x"}, "key": NUL}, None),
        ("PATCH", f"/jobs/{job_id}", {"message": NUL}, None),
        ("PATCH", f"/jobs/{job_id}", {"result": NUL}, None),
        ("PATCH", f"/jobs/{job_id}", {"progress_data": {NUL: 1}}, None),
        ("PATCH", f"/jobs/{job_id}", {"items_total": TOO_BIG}, None),
        ("PATCH", f"/jobs/{job_id}", {"items_succeeded": TOO_BIG}, None),
        ("GET", "/jobs", None, {"q": NUL}),
        ("GET", "/jobs", None, {"kind": NUL}),
        ("GET", "/jobs", None, {"owner": NUL}),
        ("GET", "/stats", None, {"kind": NUL}),
    ]
    server_errors = []
    for method, path, body, params in requests:
        response = api.client.request(
            method, API + path, json=body, params=params, headers=api.admin
        )
        if response.status_code >= 500:
            server_errors.append((method, path, body or params, response.status_code))
    assert server_errors == []


UNSTORABLE_BODIES = [
    ("POST", "/jobs/external", b'{"kind": "a\\ud800b"}'),
    ("POST", "/jobs/external", b'{"kind": "x", "message": "\\udfff"}'),
    ("POST", "/jobs/external", b'{"kind": "x", "payload": {"n": NaN}}'),
    ("POST", "/jobs/external", b'{"kind": "x", "payload": {"n": 1e400}}'),
    ("POST", "/jobs/external", b'{"kind": "x", "labels": {"n": -Infinity}}'),
    ("POST", "/jobs/external", b'{"kind": "x", "payload": {"\\ud800": 1}}'),
    ("POST", "/jobs/external", b'{"kind": "x", "items_total": false}'),
    ("POST", "/jobs/external", b'{"kind": "x", "items_total": 2.5}'),
    ("POST", "/jobs/external", b'{"kind": "x", "items_total": "3"}'),
    ("POST", "/jobs", b'{"kind": "greet", "payload": {"name": NaN}}'),
    ("POST", "/jobs", b'{"kind": "greet", "payload": {"name": "x"}, "run_after": 0}'),
    ("POST", "/jobs", b'{"kind": "greet", "payload": {"name": "x"}, "run_after": true}'),
    (
        "POST",
        "/jobs",
        b'{"kind": "greet", "payload": {}, "run_after": "0001-01-01T00:00:00+14:00"}',
    ),
    ("PATCH", "/jobs/{id}", b'{"progress": NaN}'),
    ("PATCH", "/jobs/{id}", b'{"progress": Infinity}'),
    ("PATCH", "/jobs/{id}", b'{"progress": true}'),
    ("PATCH", "/jobs/{id}", b'{"message": "\\ud800"}'),
    ("PATCH", "/jobs/{id}", b'{"error_message": "\\ud800"}'),
    ("PATCH", "/jobs/{id}", b'{"result": {"n": NaN}}'),
    ("PATCH", "/jobs/{id}", b'{"progress_data": {"n": 1e999}}'),
    ("PATCH", "/jobs/{id}", b'{"error_details": [Infinity]}'),
    ("PATCH", "/jobs/{id}", b'{"items_failed": true}'),
]


def test_unstorable_text_numbers_and_mistyped_counts_are_refused_with_a_json_422(
    api: Api,
) -> None:
    """Lone surrogates, non-finite numbers, booleans as counts, numbers as times: a 422 whose
    body is JSON (it echoes the input it refuses), on both dialects, never a 500."""
    job_id = api.external(api.admin, kind="export")["id"]
    headers = api.admin | {"Content-Type": "application/json"}
    answers = {}
    for method, path, content in UNSTORABLE_BODIES:
        response = api.client.request(
            method, API + path.format(id=job_id), content=content, headers=headers
        )
        answers[content] = response.status_code
        if response.status_code == 422:
            assert response.json()["detail"][0]["loc"][0] == "body", response.text
    assert {c: code for c, code in answers.items() if code != 422} == {}
    job = api.job(job_id)
    assert (job["progress"], job["message"], job["result"]) == (0, None, None)
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 1


@pytest.mark.parametrize(
    ("query", "page_lists"),
    [
        ("created_from=0001-01-01T00:00:00%2B14:00", 1),
        ("created_to=9999-12-31T23:59:59-14:00", 1),
        ("created_to=false", 1),
        ("created_to=0", 1),
        ("created_from=2999-01-01", 0),  # the page's own inputs may name a day
    ],
)
def test_times_out_of_range_or_not_times_are_refused_by_the_api_and_ignored_by_pages(
    api: Api, query: str, page_lists: int
) -> None:
    api.external(api.admin, kind="export")
    refused = api.client.get(f"{API}/jobs?{query}", headers=api.admin)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"][0] == "query"

    page = _cookie_client(api, api.admin).get(f"/jobs?{query}")
    assert page.status_code == 200
    listed_jobs = f"{page_lists} job{'' if page_lists == 1 else 's'} ·"
    assert listed_jobs in page.text  # a time that cannot be applied is left out
    listed = api.client.get(f"{API}/jobs?created_from=2020-01-01T00:00:00Z", headers=api.admin)
    assert listed.json()["total_count"] == 1


def test_options_and_unsupported_methods_list_exactly_the_paths_methods(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()["paths"]
    for path, concrete in [
        ("/jobs", "/jobs"),
        ("/jobs/external", "/jobs/external"),
        ("/jobs/active", "/jobs/active"),
        ("/jobs/{job_id}", "/jobs/some-id"),
        ("/jobs/{job_id}/cancel", "/jobs/some-id/cancel"),
        ("/stats", "/stats"),
    ]:
        documented = {m.upper() for m in spec[API + path]}
        options = api.client.options(API + concrete, headers=api.admin)
        assert options.status_code in (200, 204), (path, options.text)
        assert set(options.headers["allow"].split(", ")) == documented, path
        other = ({"GET", "POST", "PATCH", "PUT", "DELETE"} - documented).pop()
        refused = api.client.request(other, API + concrete, headers=api.admin)
        assert refused.status_code == 405, (other, path, refused.text)
        assert set(refused.headers["allow"].split(", ")) == documented, (other, path)
    untouched = api.client.patch(f"{API}/jobs/active", json={}, headers=api.admin)
    assert untouched.status_code == 405  # not taken for PATCH /jobs/{job_id} with id "active"


def test_an_external_job_asked_to_start_finished_is_refused_with_a_documented_4xx(
    api: Api,
) -> None:
    documented = api.client.get("/openapi.json").json()["paths"][f"{API}/jobs/external"]["post"]
    for status in ("succeeded", "partial", "failed", "cancelled"):
        response = api.client.post(
            f"{API}/jobs/external", json={"kind": "export", "status": status}, headers=api.admin
        )
        assert 400 <= response.status_code < 500, response.text
        assert str(response.status_code) in documented["responses"], (status, response.text)
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 0


# -- streams and metrics --------------------------------------------------------------------


def test_the_stream_of_a_finished_job_sends_it_once_and_closes(api: Api) -> None:
    job_id = api.external(api.alice, kind="export")["id"]
    api.patch(job_id, api.alice, status="succeeded", result={"ok": True})

    response = api.client.get(f"{API}/jobs/{job_id}/stream", headers=api.alice)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in response.text.split("\n\n") if f.strip()]
    assert len(frames) == 1
    fields = dict(line.split(": ", 1) for line in frames[0].splitlines())
    job = api.job(job_id)
    assert fields["event"] == "job"
    assert fields["id"] == datetime.fromisoformat(job["updated_at"]).isoformat()
    streamed = httpx.Response(200, content=fields["data"]).json()
    assert (streamed["id"], streamed["status"], streamed["result"]) == (
        job_id,
        "succeeded",
        {"ok": True},
    )


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_report_the_stores_jobs_in_prometheus_text_format(api: Api) -> None:
    finished: list[str] = []
    for status in ("succeeded", "succeeded", "failed"):
        job_id = api.external(api.admin, kind="export")["id"]
        assert api.patch(job_id, api.admin, status=status).status_code == 200
        finished.append(job_id)
    api.external(api.admin, kind="export")
    for name in ("a", "b", "c"):
        submit = {"kind": "greet", "payload": {"name": name}}
        assert api.client.post(f"{API}/jobs", json=submit, headers=api.admin).status_code == 202
    future = {"kind": "greet", "payload": {"name": "later"}, "run_after": later()}
    assert api.client.post(f"{API}/jobs", json=future, headers=api.admin).status_code == 202

    response = api.client.get(f"{API}/metrics", headers=api.admin)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    assert value("jobtrail_jobs", kind="export", trigger="external", status="succeeded") == 2
    assert value("jobtrail_jobs", kind="export", trigger="external", status="failed") == 1
    assert value("jobtrail_jobs", kind="export", trigger="external", status="running") == 1
    assert value("jobtrail_jobs", kind="greet", trigger="api", status="queued") == 4
    assert value("jobtrail_jobs_finished_total", kind="export", status="succeeded") == 2
    assert value("jobtrail_jobs_finished_total", kind="export", status="failed") == 1
    assert ("jobtrail_jobs_finished_total", frozenset({("kind", "greet")})) not in samples
    assert value("jobtrail_jobs_created_total", kind="greet") == 4
    assert value("jobtrail_queue_depth", queue="default") == 3
    assert value("jobtrail_job_duration_seconds_bucket", kind="export", le="+Inf") == 3
    assert value("jobtrail_job_duration_seconds_count", kind="export") == 3
    durations = sum(api.job(job_id)["duration_seconds"] for job_id in finished)
    assert value("jobtrail_job_duration_seconds_sum", kind="export") == pytest.approx(durations)
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in samples.items()
        if name == "jobtrail_job_duration_seconds_bucket" and dict(labels)["kind"] == "export"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert value("jobtrail_active_jobs", status="queued") == 4
    assert value("jobtrail_active_jobs", status="running") == 1


def test_metrics_give_an_empty_queue_a_zero_sample(api: Api) -> None:
    with api.tracker.worker(1, queues=["gpu"], heartbeat_interval=0.05):
        until(lambda: api.tracker.workers(), 5, what="the worker to announce itself")
        samples = _samples(api.client.get(f"{API}/metrics", headers=api.admin).text)
    for queue in ("default", "gpu"):
        assert samples[("jobtrail_queue_depth", frozenset({("queue", queue)}))] == 0
        labels = frozenset({("queue", queue)})
        assert samples[("jobtrail_oldest_queued_age_seconds", labels)] == 0


def test_metrics_report_the_rate_limiter_waits_of_the_serving_process(api: Api) -> None:
    limiter = Limiter(f"upstream-{uuid.uuid4().hex[:8]}", "1/second")
    waited = [limiter.acquire() for _ in range(2)]
    assert waited[0] == 0.0
    assert waited[1] > 0

    samples = _samples(api.client.get(f"{API}/metrics", headers=api.admin).text)

    labels = frozenset({("limiter", limiter.name)})
    assert samples[("jobtrail_ratelimit_waits_total", labels)] == 1
    seconds = samples[("jobtrail_ratelimit_wait_seconds_total", labels)]
    assert seconds > 0
    assert seconds == pytest.approx(waited[1], abs=0.01)


def test_metrics_name_the_busiest_kinds_and_fold_the_rest_into_other(
    database_url: str,
) -> None:
    with (
        Tracker(database_url, metrics_max_kinds=2) as tracker,
        open_client(create_app(tracker, run_worker=False)) as client,
    ):
        api = _api(tracker, client)
        for kind, count in [("big", 3), ("mid", 2), ("t1", 1), ("t2", 1), ("t3", 1)]:
            for _ in range(count):
                api.external(api.admin, kind=kind, trigger=f"trigger-{kind}")
        samples = _samples(client.get(f"{API}/metrics", headers=api.admin).text)
    created = {
        dict(labels)["kind"]: value
        for (name, labels), value in samples.items()
        if name == "jobtrail_jobs_created_total"
    }
    assert created == {"big": 3, "mid": 2, "other": 3}
    current = {
        (dict(labels)["kind"], dict(labels)["trigger"]): value
        for (name, labels), value in samples.items()
        if name == "jobtrail_jobs"
    }
    assert current == {
        ("big", "trigger-big"): 3,
        ("mid", "trigger-mid"): 2,
        ("other", "other"): 3,
    }
    assert samples[("jobtrail_open_streams", frozenset())] == 0


# -- schedules ------------------------------------------------------------------------------


def test_schedules_show_their_recent_slots_to_their_owner_and_run_on_demand(
    database_url: str,
) -> None:
    with Tracker(database_url, heartbeat_interval=0.1, poll_interval=0.02) as tracker:
        register(tracker)
        tracker.schedule("nightly", "greet", every=1, payload={"name": "night"}, owner="A")
        tracker.schedule("audit", "greet", every=3600, payload={"name": "audit"})
        with tracker.worker(concurrency=1):  # the worker stores the schedules and ticks them
            until(
                lambda: [s for s in tracker.ops.list_schedules(owner="A") if s.recent_runs],
                15,
                what="a slot of the schedule to fire",
            )
        [expected] = tracker.ops.list_schedules(owner="A", recent=20)
        fired = expected.recent_runs[0]
        assert fired.job_id is not None
        with open_client(create_app(tracker, run_worker=False)) as client:
            api = _api(tracker, client)

            def listed(headers: dict[str, str]) -> list[dict[str, Any]]:
                response = client.get(f"{API}/schedules", headers=headers)
                assert response.status_code == 200, response.text
                schedules: list[dict[str, Any]] = response.json()
                return schedules

            assert listed(api.alice) == TypeAdapter(list[ScheduleInfo]).dump_python(
                [expected], mode="json"
            )
            assert listed(api.bob) == []
            assert [s["name"] for s in listed(api.admin)] == ["audit", "nightly"]
            [nightly] = listed(api.alice)
            assert (nightly["name"], nightly["kind"], nightly["owner"]) == ("nightly", "greet", "A")
            assert (nightly["cron"], nightly["every_seconds"]) == (None, 1.0)
            run = nightly["recent_runs"][0]
            assert (run["schedule"], run["outcome"]) == ("nightly", "fired")
            assert run["job_id"] == fired.job_id

            page = client.get("/schedules", headers={"Cookie": _cookie(api.alice)})
            assert page.status_code == 200
            assert "nightly" in page.text
            assert f'href="/jobs/{fired.job_id}"' in page.text
            assert "audit" not in page.text

            assert client.post(f"{API}/schedules/nightly/run", headers=api.bob).status_code == 404
            ran = client.post(f"{API}/schedules/nightly/run", headers=api.alice)
            assert ran.status_code == 202, ran.text
            job = client.get(ran.json()["status_url"], headers=api.alice).json()
            assert (job["schedule"], job["trigger"], job["owner"]) == ("nightly", "manual", "A")


def _cookie(headers: dict[str, str]) -> str:
    """The dashboard's sign-in cookie for the token of ``headers``."""
    return "jobtrail_token=" + headers["Authorization"].removeprefix("Bearer ")


# -- OpenAPI --------------------------------------------------------------------------------

DESIGN_TABLE = [
    ("post", "/jobs"),
    ("post", "/jobs/external"),
    ("patch", "/jobs/{job_id}"),
    ("get", "/jobs/{job_id}"),
    ("get", "/jobs/{job_id}/progress"),
    ("get", "/jobs/{job_id}/events"),
    ("get", "/jobs"),
    ("get", "/jobs/active"),
    ("post", "/jobs/{job_id}/cancel"),
    ("post", "/jobs/{job_id}/retry"),
    ("get", "/stats"),
    ("get", "/jobs/{job_id}/stream"),
    ("get", "/stream"),
    ("get", "/schedules"),
    ("post", "/schedules/{name}/run"),
    ("get", "/health"),
    ("get", "/metrics"),
]


def test_the_openapi_document_lists_every_endpoint_with_its_error_responses(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    paths = spec["paths"]
    for method, path in DESIGN_TABLE:
        operation = paths.get(API + path, {}).get(method)
        assert operation is not None, f"{method.upper()} {path} is not documented"
        codes = set(operation["responses"])
        expected = set()
        if path not in ("/health", "/metrics"):
            expected |= {"401", "422", "429"}
            assert operation.get("security"), f"{method.upper()} {path} needs no token?"
        if "{job_id}" in path or "{name}" in path:
            expected.add("404")
        if path.endswith(("/cancel", "/retry")) or method == "patch":
            expected.add("409")
        if "requestBody" in operation:
            expected.add("413")
        assert expected <= codes, f"{method.upper()} {path} lacks {sorted(expected - codes)}"
        for code in expected:
            schema = operation["responses"][code]["content"]["application/json"]["schema"]
            assert schema, (method, path, code)
    post_jobs = paths[f"{API}/jobs"]["post"]["responses"]
    assert {"200", "202"} <= set(post_jobs)
    assert "201" in paths[f"{API}/jobs/external"]["post"]["responses"]
    assert "201" in paths[f"{API}/jobs/{{job_id}}/retry"]["post"]["responses"]
    assert "202" in paths[f"{API}/jobs/{{job_id}}/cancel"]["post"]["responses"]
    schemas = spec["components"]["schemas"]
    assert {"Job", "Page", "Stats", "ProgressResponse", "EventsResponse"} <= set(schemas)


SEMANTIC_422 = ["2xx", "401", "403", "404", "409", "422", "429"]
"""What a schema-valid request may get where validity goes beyond the schema: ``POST /jobs``
names a kind this server may not have, with a payload its handler may not take; a report's
counts may exceed the job's total."""


def _schemathesis_config(token: str) -> schemathesis.Config:
    # 50 cases per operation in ``make test``; ``make soak`` (scale 20) runs 1,000 each.
    examples = 50 * SCALE
    return schemathesis.Config.from_dict(
        {
            "seed": 20260301,
            "headers": {"Authorization": f"Bearer {token}"},
            # NUL is refused by every text field (one of the schema's patterns says so, JSON
            # values cannot); the other tests send it.
            "generation": {"max-examples": examples, "database": "none", "allow-x00": False},
            "phases": {"stateful": {"enabled": True, "max-steps": 12}},
            "operations": [
                {
                    "include-name": [
                        "POST /api/v1/jobs",
                        "PATCH /api/v1/jobs/{job_id}",
                        "POST /api/v1/jobs/{job_id}/items",
                        "POST /api/v1/jobs/bulk",  # a filter may match too many jobs
                    ],
                    "checks": {"positive_data_acceptance": {"expected-statuses": SEMANTIC_422}},
                }
            ],
        }
    )


def _failures(stream: Iterator[Any]) -> list[str]:
    from schemathesis.engine import Status, events

    found = []
    for event in stream:
        if isinstance(event, events.FatalError | events.NonFatalError):
            found.append(f"error: {event}")
        if not isinstance(event, events.ScenarioFinished) or event.status is not Status.FAILURE:
            continue
        for case_id, checks in event.recorder.checks.items():
            case = event.recorder.cases[case_id].value
            for check in checks:
                if check.failure_info is not None:
                    failure = check.failure_info.failure
                    found.append(f"{check.name}: {case.method} {case.formatted_path}: {failure}")
    return found


def test_the_api_conforms_to_its_openapi_document_under_every_check(database_url: str) -> None:
    """Schemathesis with every check and the examples, coverage, fuzzing and stateful phases,
    as an admin, over every operation but the streams (they never end; the stream tests cover
    them): no 5xx, no status, header or body outside the document, schema-valid data accepted
    (unless only the server can know it is wrong, ``SEMANTIC_422``), invalid data refused,
    ``Allow`` exact."""
    from schemathesis.engine import from_schema

    with Tracker(database_url, auth_rate_limit="100000/minute") as tracker:
        register(tracker)
        admin = tracker.ops.create_token("admin", None)
        schema = (
            schemathesis.openapi.from_asgi(
                "/openapi.json",
                create_app(tracker, run_worker=False),
                config=_schemathesis_config(admin),
            )
            .include(path_regex="^/api/v1/")
            .exclude(path_regex="stream$")
        )
        assert _failures(from_schema(schema).execute()) == []


def test_a_body_that_is_not_utf8_is_refused_with_a_documented_4xx(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()["paths"]
    headers = api.admin | {"Content-Type": "application/json"}
    for method, path, documented in [
        ("POST", "/jobs", spec[f"{API}/jobs"]["post"]["responses"]),
        ("POST", "/jobs/external", spec[f"{API}/jobs/external"]["post"]["responses"]),
        ("PATCH", "/jobs/some-id", spec[f"{API}/jobs/{{job_id}}"]["patch"]["responses"]),
    ]:
        response = api.client.request(method, API + path, content=b"\xff\xfe{", headers=headers)
        assert 400 <= response.status_code < 500, (method, path, response.text)
        assert str(response.status_code) in documented, (method, path, response.text)


# -- a host app -----------------------------------------------------------------------------


def users(request: HTTPConnection, token: str | None) -> Principal:
    """A host app's own users: ``X-User`` names them, ``root`` is an admin; a bearer
    ``let-me-in`` is an admin too."""
    if token == "let-me-in":
        return Principal("service", None)
    user = request.headers.get("X-User")
    if not user:
        raise HTTPException(401, "who are you?")
    return Principal(user, None if user == "root" else user)


def test_a_host_app_plugs_its_own_users_into_the_router(api_tracker: Tracker) -> None:
    app = FastAPI()
    app.include_router(create_router(api_tracker, auth=users), prefix="/jobtrail")
    jobtrail_admin = bearer(api_tracker.ops.create_token("admin", None))
    with open_client(app) as client:
        anonymous = client.get("/jobtrail/jobs", headers=jobtrail_admin)
        assert anonymous.status_code == 401
        assert anonymous.json() == {"detail": "who are you?"}

        created = client.post(
            "/jobtrail/jobs/external", json={"kind": "export"}, headers={"X-User": "ann"}
        )
        assert created.status_code == 201, created.text
        job = created.json()
        assert job["owner"] == "ann"
        submitted = client.post(
            "/jobtrail/jobs",
            json={"kind": "greet", "payload": {"name": "x"}},
            headers={"X-User": "ben"},
        )
        assert submitted.status_code == 202

        def listed(headers: dict[str, str]) -> list[str]:
            response = client.get("/jobtrail/jobs", headers=headers)
            assert response.status_code == 200
            return [j["owner"] for j in response.json()["jobs"]]

        assert listed({"X-User": "ann"}) == ["ann"]
        assert listed({"X-User": "ben"}) == ["ben"]
        assert sorted(listed({"X-User": "root"})) == ["ann", "ben"]
        assert sorted(listed(bearer("let-me-in"))) == ["ann", "ben"]
        events = client.get(f"/jobtrail/jobs/{job['id']}/events", headers={"X-User": "ann"})
        assert events.json()["events"][0]["actor"] == "ann"
    assert api_tracker.get(job["id"]).owner == "ann"


def test_a_host_app_that_mounts_only_the_router_answers_404_and_409(
    api_tracker: Tracker,
) -> None:
    app = FastAPI()
    app.include_router(create_router(api_tracker), prefix=API)
    admin = bearer(api_tracker.ops.create_token("admin", None))
    with open_client(app, raise_server_exceptions=False) as client:
        missing = client.get(f"{API}/jobs/no-such-job", headers=admin)
        assert missing.status_code == 404, missing.text
        assert missing.json() == {"detail": "job 'no-such-job' not found"}

        created = client.post(f"{API}/jobs/external", json={"kind": "export"}, headers=admin)
        job_id = created.json()["id"]
        assert client.patch(f"{API}/jobs/{job_id}", json={"status": "succeeded"}, headers=admin)
        late = client.patch(f"{API}/jobs/{job_id}", json={"status": "failed"}, headers=admin)
        assert late.status_code == 409, late.text


def test_the_websocket_carries_every_visible_change_as_job_json(api: Api) -> None:
    theirs = api.external(api.bob, kind="export")
    with api.client.websocket_connect(f"{API}/ws", headers=api.alice) as socket:
        mine = api.external(api.alice, kind="export")
        assert api.patch(theirs["id"], api.bob, message="not for alice").status_code == 200
        assert api.patch(mine["id"], api.alice, status="succeeded").status_code == 200
        seen: list[dict[str, Any]] = []
        while not any(j["status"] == "succeeded" for j in seen):
            seen.append(socket.receive_json())
    assert {j["id"] for j in seen} == {mine["id"]}
    assert seen[0]["kind"] == "export"


def test_the_websocket_refuses_a_missing_token(api: Api) -> None:
    from starlette.websockets import WebSocketDisconnect

    with (
        pytest.raises(WebSocketDisconnect) as refused,
        api.client.websocket_connect(f"{API}/ws") as socket,
    ):
        socket.receive_json()
    assert refused.value.code == 4401


# -- the web extra --------------------------------------------------------------------------


def test_importing_the_web_layer_without_its_extra_says_in_one_line_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if FastAPI were not installed
    monkeypatch.delitem(sys.modules, "jobtrail.web")

    with pytest.raises(MissingExtra) as missing:
        importlib.import_module("jobtrail.web")

    message = str(missing.value)
    assert "pip install 'jobtrail[web]'" in message
    assert "fastapi" in message
    assert "\n" not in message
    assert isinstance(missing.value, ImportError)
