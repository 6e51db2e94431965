"""A host app: the router with the app's own users, and the router mounted alone."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from starlette.requests import HTTPConnection

from jobtrail import Tracker
from jobtrail.web import Principal, create_router
from tests.web.client import API, TESTCLIENT_WARNING, bearer, open_client

pytestmark = TESTCLIENT_WARNING


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
