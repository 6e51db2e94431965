"""Owner tokens: another owner's job answers exactly like a missing one; listings, counts and keys
are per owner; a change records the name of the token that made it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from jobtrail import Tracker
from jobtrail.exceptions import InvalidOwner
from tests.web.client import API, TESTCLIENT_WARNING, Api, bearer, later

pytestmark = TESTCLIENT_WARNING


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
