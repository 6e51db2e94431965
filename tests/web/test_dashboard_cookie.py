"""The dashboard's cookie: cross-origin changes refused, sign-in and sign-out from the dashboard
only, and the pages' security headers."""

from __future__ import annotations

import pytest

from jobtrail import Tracker
from jobtrail.web import create_app
from tests.apps.api_handlers import register
from tests.web.client import API, OWN, TESTCLIENT_WARNING, Api, open_client

pytestmark = TESTCLIENT_WARNING


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
    client = api.cookie_client(api.alice)

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
            api = Api.with_tokens(tracker, client)
            job_id = api.external(api.admin, kind="export")["id"]
            foreign = {"Origin": "http://evil.example"}
            assert api.patch(job_id, api.admin | foreign, message="by bearer").status_code == 200
            cookie = api.cookie_client(api.admin)
            proxied = cookie.post(
                f"{API}/jobs/{job_id}/cancel", headers={"Origin": "https://jobs.example.com"}
            )
            assert proxied.status_code == 202, proxied.text


def test_a_websocket_with_the_cookie_from_another_origin_is_refused(api: Api) -> None:
    from starlette.websockets import WebSocketDisconnect

    client = api.cookie_client(api.alice)
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
    client = api.cookie_client(api.alice)
    assert client.get("/logout", follow_redirects=False).status_code == 405
    assert client.post("/logout", headers={"Origin": "http://evil.example"}).status_code == 403
    page = client.get("/")
    assert 'action="/logout"' in page.text
    assert 'href="/logout"' not in page.text
    out = client.post("/logout", headers={"Origin": OWN}, follow_redirects=False)
    assert out.status_code == 303
    assert 'jobtrail_token=""' in out.headers["set-cookie"]


def test_every_dashboard_response_forbids_frames_inline_scripts_and_sniffing(api: Api) -> None:
    client = api.cookie_client(api.admin)
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
