"""Tokens: every endpoint but health wants a valid one, and a token's requests and failed sign-ins
are rate limited."""

from __future__ import annotations

from fastapi import FastAPI

from jobtrail import Tracker
from jobtrail.web import create_app, create_router
from tests.web.client import API, OWN, TESTCLIENT_WARNING, Api, bearer, open_client

pytestmark = TESTCLIENT_WARNING


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
