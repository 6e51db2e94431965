"""Jobs over HTTP: submitted jobs run in the app's worker and are read, cancelled and retried;
external jobs report their progress and their end with PATCH."""

from __future__ import annotations

from typing import Any

import pytest

from tests.waiting import until
from tests.web.client import API, TESTCLIENT_WARNING, Api

pytestmark = TESTCLIENT_WARNING


# -- the web extra --------------------------------------------------------------------------


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


# -- the web extra --------------------------------------------------------------------------


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
