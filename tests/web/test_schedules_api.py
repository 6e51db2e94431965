"""Schedules over HTTP: an owner sees its schedules' recent slots and runs one on demand."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from jobtrail import Tracker
from jobtrail.jobs import ScheduleInfo
from jobtrail.web import create_app
from tests.apps.api_handlers import register
from tests.waiting import until
from tests.web.client import API, TESTCLIENT_WARNING, Api, open_client

pytestmark = TESTCLIENT_WARNING


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
            api = Api.with_tokens(tracker, client)

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
