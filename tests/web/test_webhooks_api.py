"""The webhook endpoints: subscriptions scoped to owner tokens, bad input refused with a clear
4xx and nothing stored, the secret shown only at creation and rotation, and a job's delivery
log and replay against a real receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from jobtrail import Tracker
from jobtrail.web import create_app
from tests.apps.api_handlers import register
from tests.waiting import until
from tests.web.client import API, BODY_LIMIT, TESTCLIENT_WARNING, Api, open_client
from tests.webhook_receiver import Receiver

pytestmark = TESTCLIENT_WARNING

PUBLIC = "http://93.184.215.14/hook"
"""A public address: accepted (no request is sent: the ``api`` app runs no courier)."""


@pytest.fixture
def loopback_api(database_url: str) -> Iterator[Api]:
    """The app with its worker and courier, allowed to send webhooks to loopback."""
    with Tracker(
        database_url,
        flush_interval=0.02,
        poll_interval=0.02,
        max_body_bytes=BODY_LIMIT,
        webhook_allow_private=True,
        webhook_poll_interval=0.05,
    ) as tracker:
        register(tracker)
        with open_client(create_app(tracker, concurrency=1)) as client:
            yield Api.with_tokens(tracker, client)


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    """The app without a worker and without a courier: the subscriptions these tests make
    name a public address, and nothing may ever be sent there."""
    with Tracker(
        database_url, flush_interval=0.02, max_body_bytes=BODY_LIMIT, webhook_deliver=False
    ) as tracker:
        register(tracker)
        with open_client(create_app(tracker, run_worker=False)) as client:
            yield Api.with_tokens(tracker, client)


def create(api: Api, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = api.client.post(f"{API}/webhooks", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_an_admin_creates_reads_changes_and_deletes_a_subscription(api: Api) -> None:
    created = create(api, api.admin, url=PUBLIC, event_types=["job.failed"], kinds=["export"])
    webhook, secret = created["webhook"], created["secret"]
    assert secret.startswith("whsec_")
    assert webhook["owner"] is None
    assert webhook["enabled"] is True
    assert webhook["created_by"] == "admin"
    path = f"{API}/webhooks/{webhook['id']}"

    shown = api.client.get(path, headers=api.admin)
    assert shown.status_code == 200
    assert shown.json()["event_types"] == ["job.failed"]
    changed = api.client.patch(path, json={"enabled": False, "queues": ["q"]}, headers=api.admin)
    assert changed.status_code == 200, changed.text
    assert changed.json()["enabled"] is False
    assert changed.json()["queues"] == ["q"]
    listed = api.client.get(f"{API}/webhooks", headers=api.admin).json()
    assert [w["id"] for w in listed["webhooks"]] == [webhook["id"]]
    for response in (shown, changed):
        assert secret not in response.text
        assert "secret" not in response.json()

    assert api.client.delete(path, headers=api.admin).status_code == 204
    assert api.client.get(path, headers=api.admin).status_code == 404


def test_an_owner_token_subscribes_to_its_own_jobs_only(api: Api) -> None:
    mine = create(api, api.alice, url=PUBLIC)["webhook"]
    assert mine["owner"] == "A"
    refused = [
        api.client.post(f"{API}/webhooks", json={"url": PUBLIC, "owner": "B"}, headers=api.alice),
        api.client.post(
            f"{API}/webhooks", json={"url": PUBLIC, "allow_private": True}, headers=api.alice
        ),
    ]
    assert [r.status_code for r in refused] == [403, 403]
    assert all(r.json()["detail"] for r in refused)

    theirs = create(api, api.bob, url=PUBLIC)["webhook"]
    listed = api.client.get(f"{API}/webhooks", headers=api.alice).json()["webhooks"]
    assert [w["id"] for w in listed] == [mine["id"]]
    other = f"{API}/webhooks/{theirs['id']}"
    assert api.client.get(other, headers=api.alice).status_code == 404
    assert api.client.patch(other, json={"enabled": False}, headers=api.alice).status_code == 404
    assert api.client.post(f"{other}/rotate", headers=api.alice).status_code == 404
    assert api.client.delete(other, headers=api.alice).status_code == 404
    assert api.client.get(f"{other}/deliveries", headers=api.alice).status_code == 404
    assert api.client.get(other, headers=api.bob).json()["enabled"] is True
    admin_view = api.client.get(f"{API}/webhooks", headers=api.admin).json()["webhooks"]
    assert len(admin_view) == 2


BAD = [
    pytest.param({"url": "ftp://example.com/x"}, id="scheme"),
    pytest.param({"url": "not a url"}, id="not-a-url"),
    pytest.param({"url": "http://user:pw@93.184.215.14/x"}, id="credentials"),
    pytest.param({"url": "http://127.0.0.1:8080/x"}, id="loopback"),
    pytest.param({"url": "http://10.0.0.1/x"}, id="private"),
    pytest.param({"url": "http://169.254.169.254/latest"}, id="metadata"),
    pytest.param({"url": "http://[::1]/x"}, id="loopback-v6"),
    pytest.param({"url": PUBLIC, "event_types": ["job.exploded"]}, id="unknown-type"),
    pytest.param({"url": PUBLIC, "kinds": [f"k{i}" for i in range(51)]}, id="many-kinds"),
    pytest.param({"url": PUBLIC, "labels": {f"k{i}": "v" for i in range(21)}}, id="many-labels"),
    pytest.param({"url": PUBLIC, "labels": {"k": {"deep": 1}}}, id="nested-label"),
    pytest.param({"url": PUBLIC, "kinds": "export"}, id="kinds-not-a-list"),
    pytest.param({"url": PUBLIC, "kinds": [""]}, id="empty-kind"),
    pytest.param({"url": PUBLIC, "allow_private": "yes"}, id="odd-bool"),
    pytest.param({"url": PUBLIC, "secret": "mine"}, id="unknown-field"),
    pytest.param({"url": 42}, id="url-not-text"),
    pytest.param({"url": "http://x/\u0000"}, id="nul"),
]


@pytest.mark.parametrize("body", BAD)
def test_bad_input_is_refused_with_a_422_and_nothing_is_stored(
    api: Api, body: dict[str, Any]
) -> None:
    response = api.client.post(f"{API}/webhooks", json=body, headers=api.admin)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert api.client.get(f"{API}/webhooks", headers=api.admin).json()["webhooks"] == []


def test_a_patch_is_checked_as_a_creation_is(api: Api) -> None:
    webhook = create(api, api.alice, url=PUBLIC)["webhook"]
    path = f"{API}/webhooks/{webhook['id']}"
    for body in ({"url": "http://10.0.0.1/x"}, {"event_types": ["nope"]}, {"enabled": "no"}):
        assert api.client.patch(path, json=body, headers=api.alice).status_code == 422
    forbidden = api.client.patch(path, json={"allow_private": True}, headers=api.alice)
    assert forbidden.status_code == 403
    assert api.client.get(path, headers=api.alice).json() == webhook


def test_a_rotation_shows_the_new_secret_once(api: Api) -> None:
    created = create(api, api.alice, url=PUBLIC)
    path = f"{API}/webhooks/{created['webhook']['id']}"
    rotated = api.client.post(f"{path}/rotate", headers=api.alice)
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new.startswith("whsec_")
    assert new != created["secret"]
    assert rotated.json()["webhook"]["previous_secret_until"] is not None
    for shown in (
        api.client.get(path, headers=api.alice),
        api.client.get(f"{API}/webhooks", headers=api.alice),
    ):
        assert new not in shown.text
        assert created["secret"] not in shown.text


def test_a_jobs_delivery_log_and_replay(loopback_api: Api, receiver: Receiver) -> None:
    api = loopback_api
    created = create(api, api.alice, url=receiver.url, event_types=["job.succeeded"])
    receiver.secrets.append(created["secret"])
    response = api.client.post(
        f"{API}/jobs", json={"kind": "greet", "payload": {"name": "x"}}, headers=api.alice
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    api.wait_until_finished(job_id)
    assert receiver.wait_for(lambda got: len(got) == 1, timeout=8)

    def recorded() -> list[dict[str, Any]]:  # the receiver answered before it is recorded
        log = api.client.get(f"{API}/jobs/{job_id}/deliveries", headers=api.alice)
        assert log.status_code == 200
        found: list[dict[str, Any]] = log.json()["deliveries"]
        return found if all(d["status"] == "delivered" for d in found) else []

    (delivery,) = until(recorded, 8, what="the delivery to be recorded as delivered")
    assert delivery["type"] == "job.succeeded"
    (attempt,) = delivery["tries"]
    assert attempt["status_code"] == 200
    assert attempt["duration"] >= 0
    assert attempt["response"] == "ok"
    assert api.client.get(f"{API}/jobs/{job_id}/deliveries", headers=api.bob).status_code == 404
    page = api.cookie_client(api.alice).get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert "Webhook deliveries" in page.text
    assert "job.succeeded" in page.text
    assert created["secret"] not in page.text
    api.client.cookies.clear()

    replay = f"{API}/webhooks/deliveries/{delivery['id']}/replay"
    assert api.client.post(replay, headers=api.bob).status_code == 404
    assert api.client.post(replay, headers=api.alice).status_code == 202
    assert receiver.wait_for(lambda got: len(got) == 2, timeout=8)
    assert [r.id for r in receiver.accepted()] == [delivery["id"], delivery["id"]]
    listed = api.client.get(
        f"{API}/webhooks/{created['webhook']['id']}/deliveries", headers=api.alice
    ).json()["deliveries"]
    assert [d["id"] for d in listed] == [delivery["id"]]
