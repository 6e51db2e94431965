"""Reporting work that runs elsewhere: absolute counts, increments that concurrent reporters
never lose, and failed items — through the Python API, the REST API (TestClient and the real
``jobtrail serve``) and the CLI, on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from jobtrail import Status, Tracker
from jobtrail.exceptions import IllegalTransition, InvalidData
from jobtrail.jobs import NewFailedItem, NewJob
from jobtrail.store.tables import job_events
from jobtrail.web import create_app
from tests.e2e.test_serve import Servers, create_token, jobtrail
from tests.web.client import API, TESTCLIENT_WARNING, open_client

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

pytestmark = TESTCLIENT_WARNING

THREADS = 8
EACH = 25


def external(tracker: Tracker, total: int | None = None, owner: str | None = None) -> str:
    """A running external job's id."""
    new = NewJob("export", None, owner=owner, items_total=total, status=Status.RUNNING)
    job, _ = tracker.add(new)
    return job.id


def at_once(workers: int, work: Callable[[int], None]) -> None:
    """Run ``work(n)`` in ``workers`` threads released together; re-raise the first failure."""
    start = threading.Barrier(workers)
    failures: list[BaseException] = []

    def run(n: int) -> None:
        start.wait()
        try:
            work(n)
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]


# -- the Python API -------------------------------------------------------------------------


def test_concurrent_increments_add_up_to_the_sum_of_every_report(tracker: Tracker) -> None:
    job_id = external(tracker, total=THREADS * EACH * 2)

    def report(n: int) -> None:
        for i in range(EACH):
            delta = {"succeeded_delta": 1} if (n + i) % 2 else {"advance": 1}
            tracker.report(job_id, delta | {"failed_delta": 1})

    at_once(THREADS, report)
    job = tracker.get(job_id)
    assert (job.items_succeeded, job.items_failed) == (THREADS * EACH, THREADS * EACH)
    assert job.items_done == THREADS * EACH * 2
    assert job.progress == 100.0


def test_counts_are_zero_not_null_once_a_job_has_a_total(tracker: Tracker) -> None:
    job, _ = tracker.add(NewJob("import"))
    assert (job.items_total, job.items_done, job.items_succeeded) == (None, None, None)

    job = tracker.report(job.id, {"items_total": 10})

    assert (job.items_done, job.items_succeeded, job.items_failed) == (0, 0, 0)
    assert tracker.get(job.id).items_done == 0


def test_items_done_sets_the_succeeded_count_beside_the_failed_one(tracker: Tracker) -> None:
    job_id = external(tracker, total=10)
    tracker.report(job_id, {"failed_delta": 2})
    job = tracker.report(job_id, {"items_done": 5})
    assert (job.items_done, job.items_succeeded, job.items_failed) == (5, 3, 2)
    assert job.progress == 50.0


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"succeeded_delta": 8}, "exceeds items_total"),
        ({"items_succeeded": 1, "advance": 1}, "report one of them"),
        ({"items_done": 4, "succeeded_delta": 1}, "report one of them"),
        ({"items_done": 1, "items_failed": 2}, "less than items_failed"),
        ({"failed_delta": -1}, "at least 0"),
    ],
)
def test_a_report_whose_counts_do_not_make_sense_is_refused_and_changes_nothing(
    tracker: Tracker, values: dict[str, Any], complaint: str
) -> None:
    job_id = external(tracker, total=10)
    tracker.report(job_id, {"succeeded_delta": 3})
    with pytest.raises(InvalidData, match=complaint):
        tracker.report(job_id, values)
    job = tracker.get(job_id)
    assert (job.items_succeeded, job.items_done) == (3, 3)


def test_failed_items_are_redacted_recorded_and_counted(tracker: Tracker) -> None:
    job_id = external(tracker, total=4)
    items = [
        NewFailedItem("row-1", "ValueError", "bad row, password=hunter2"),
        NewFailedItem("x" * 800, "KeyError", "missing column"),
    ]
    job = tracker.report_items(job_id, items)
    assert (job.items_failed, job.items_done, job.progress) == (2, 2, 50.0)
    failed = tracker.failed_items(job_id)
    assert [f.error_type for f in failed] == ["ValueError", "KeyError"]
    assert "hunter2" not in failed[0].message
    assert len(failed[1].item_id) == 500
    history = [e for e in tracker.events(job_id) if e.type == "item_failed"]
    assert [e.data["item_id"] for e in history if isinstance(e.data, dict)] == [
        "row-1",
        "x" * 500,
    ]


def test_failed_items_past_the_total_are_refused_and_none_is_kept(tracker: Tracker) -> None:
    job_id = external(tracker, total=1)
    with pytest.raises(InvalidData):
        tracker.report_items(job_id, [NewFailedItem(str(i), "E", "") for i in range(2)])
    assert tracker.failed_items(job_id) == []


def test_a_job_that_ended_takes_no_failed_items(tracker: Tracker) -> None:
    job_id = external(tracker)
    tracker.report(job_id, {}, Status.SUCCEEDED)
    with pytest.raises(IllegalTransition):
        tracker.report_items(job_id, [NewFailedItem("a", "E", "late")])
    assert tracker.failed_items(job_id) == []


# -- the REST API in process ----------------------------------------------------------------


@pytest.fixture
def client(tracker: Tracker) -> Iterator[TestClient]:
    with open_client(create_app(tracker, run_worker=False)) as client:
        yield client


def bearer(tracker: Tracker, owner: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {tracker.ops.create_token(owner or 'admin', owner)}"}


def test_patch_takes_items_done_and_increments_from_concurrent_clients(
    tracker: Tracker, client: TestClient
) -> None:
    job_id = external(tracker, total=1000, owner="A")
    alice = bearer(tracker, "A")
    assert (
        client.patch(f"{API}/jobs/{job_id}", json={"items_done": 4}, headers=alice).json()[
            "items_succeeded"
        ]
        == 4
    )

    def report(n: int) -> None:
        for _ in range(EACH):
            body = {"advance": 1} if n % 2 else {"succeeded_delta": 1, "failed_delta": 1}
            answer = client.patch(f"{API}/jobs/{job_id}", json=body, headers=alice)
            assert answer.status_code == 200, answer.text

    at_once(THREADS, report)
    job = tracker.get(job_id)
    assert (job.items_succeeded, job.items_failed) == (4 + THREADS * EACH, THREADS // 2 * EACH)


@pytest.mark.parametrize("body", [{"advance": -1}, {"failed_delta": "2"}, {"items_done": True}])
def test_patch_refuses_an_increment_that_is_not_a_whole_count(
    tracker: Tracker, client: TestClient, body: dict[str, Any]
) -> None:
    job_id = external(tracker)
    answer = client.patch(f"{API}/jobs/{job_id}", json=body, headers=bearer(tracker, None))
    assert answer.status_code == 422
    assert tracker.get(job_id).items_done is None


def test_failed_items_are_posted_and_read_back_by_their_owner_only(
    tracker: Tracker, client: TestClient
) -> None:
    job_id = external(tracker, total=5, owner="A")
    alice, bob = bearer(tracker, "A"), bearer(tracker, "B")
    body = {"items": [{"item_id": "doc-7", "error_type": "Timeout", "message": "token=abc123"}]}
    posted = client.post(f"{API}/jobs/{job_id}/items", json=body, headers=alice)
    assert posted.status_code == 201, posted.text
    assert (posted.json()["items_failed"], posted.json()["progress"]) == (1, 20.0)
    read = client.get(f"{API}/jobs/{job_id}/items", headers=alice)
    assert read.status_code == 200
    [item] = read.json()["items"]
    assert (read.json()["total"], read.json()["next_after"]) == (1, None)
    assert (item["item_id"], item["error_type"]) == ("doc-7", "Timeout")
    assert "abc123" not in item["message"]
    assert client.get(f"{API}/jobs/{job_id}/items", headers=bob).status_code == 404
    assert client.post(f"{API}/jobs/{job_id}/items", json=body, headers=bob).status_code == 404


def test_failed_items_of_a_job_that_ended_answer_409_and_bad_ones_422(
    tracker: Tracker, client: TestClient
) -> None:
    job_id = external(tracker, total=1)
    admin = bearer(tracker, None)
    too_many = {"items": [{"item_id": "a"}, {"item_id": "b"}]}
    assert client.post(f"{API}/jobs/{job_id}/items", json=too_many, headers=admin).status_code == (
        422
    )
    empty = client.post(f"{API}/jobs/{job_id}/items", json={"items": []}, headers=admin)
    assert empty.status_code == 422
    tracker.report(job_id, {}, Status.SUCCEEDED)
    late = client.post(
        f"{API}/jobs/{job_id}/items", json={"items": [{"item_id": "a"}]}, headers=admin
    )
    assert late.status_code == 409
    assert tracker.failed_items(job_id) == []


def test_the_openapi_document_describes_the_items_endpoints_and_the_increments(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    items = document["paths"]["/api/v1/jobs/{job_id}/items"]
    assert {"201", "409", "422"} <= set(items["post"]["responses"])
    assert "200" in items["get"]["responses"]
    patch = document["components"]["schemas"]["PatchJobRequest"]["properties"]
    assert {"items_done", "advance", "succeeded_delta", "failed_delta"} <= set(patch)


# -- the real server and the CLI ------------------------------------------------------------


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Servers]:
    started = Servers(database_url, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def test_two_served_processes_lose_no_increment_and_the_cli_reads_failed_items(
    database_url: str, served: Servers
) -> None:
    token = create_token(database_url)
    servers = [served.start(), served.start()]
    with servers[0].client(token) as http:
        created = http.post("/jobs/external", json={"kind": "export", "items_total": 10_000})
        job_id = created.json()["id"]

    def report(n: int) -> None:
        with servers[n % 2].client(token) as http:
            for _ in range(EACH):
                answer = http.patch(f"/jobs/{job_id}", json={"succeeded_delta": 2})
                assert answer.status_code == 200, answer.text
            body = {"items": [{"item_id": f"item-{n}", "error_type": "E", "message": "m"}]}
            assert http.post(f"/jobs/{job_id}/items", json=body).status_code == 201

    at_once(THREADS, report)
    with servers[1].client(token) as http:
        job = http.get(f"/jobs/{job_id}").json()
    assert (job["items_succeeded"], job["items_failed"]) == (THREADS * EACH * 2, THREADS)
    done = show_json(database_url, job_id, servers[0].base_url, token)
    failed = done["failed_items"]
    assert sorted(f["item_id"] for f in failed) == [f"item-{n}" for n in range(THREADS)]


def show_json(database_url: str, job_id: str, url: str, token: str) -> dict[str, Any]:
    """``jobtrail jobs show JOB --json`` against the server at ``url``."""
    done = jobtrail(database_url, "jobs", "show", job_id, "--json", "--url", url, "--token", token)
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


def test_the_cli_reads_failed_items_from_the_api_not_from_the_history(
    database_url: str, served: Servers
) -> None:
    token = create_token(database_url)
    server = served.start()
    with server.client(token) as http:
        job_id = http.post("/jobs/external", json={"kind": "export"}).json()["id"]
        body = {"items": [{"item_id": "doc-1", "error_type": "Timeout", "message": "slow"}]}
        assert http.post(f"/jobs/{job_id}/items", json=body).status_code == 201
    with Tracker(database_url) as tracker, tracker.store.database.write() as conn:
        conn.execute(job_events.delete().where(job_events.c.type == "item_failed"))
    [item] = show_json(database_url, job_id, server.base_url, token)["failed_items"]
    assert (item["item_id"], item["error_type"], item["message"]) == ("doc-1", "Timeout", "slow")
    assert httpx.get(f"{server.base_url}/api/v1/jobs/{job_id}/items").status_code == 401
