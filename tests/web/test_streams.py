"""Streams: a job's server-sent events and the websocket that carries every visible change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.web.client import API, TESTCLIENT_WARNING, Api

pytestmark = TESTCLIENT_WARNING


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
