"""Bulk actions: many jobs cancelled or retried at once, by id or by filter, each recorded in
its history with the actor — through the tracker and through ``POST /jobs/bulk``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from jobtrail import Context, Status, Tracker
from jobtrail.bulk import MAX_BULK
from jobtrail.exceptions import TooManyJobs
from jobtrail.filters import Filters
from jobtrail.web import create_app
from tests.test_retention import finished
from tests.web.client import API, TESTCLIENT_WARNING, bearer, open_client

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

pytestmark = TESTCLIENT_WARNING


@pytest.fixture
def kinds(tracker: Tracker) -> Tracker:
    @tracker.job("report")
    def report(ctx: Context) -> None: ...

    return tracker


def test_a_bulk_cancel_by_id_cancels_each_job_and_records_the_actor(kinds: Tracker) -> None:
    queued = [kinds.submit("report", owner="A").id for _ in range(100)]
    ended = finished(kinds, "report", Status.SUCCEEDED)

    outcome = kinds.bulk("cancel", [*queued, ended, "missing"], actor="ops")

    assert outcome.matched == 102
    assert sorted(outcome.done) == sorted(queued)
    assert outcome.skipped == {ended: "already ended", "missing": "not found"}
    assert {kinds.get(j).status for j in queued} == {Status.CANCELLED}
    cancelled = [e for e in kinds.events(queued[0]) if e.type == "cancelled"]
    assert [e.actor for e in cancelled] == ["ops"]


def test_a_bulk_retry_of_failed_items_takes_only_jobs_that_have_them(kinds: Tracker) -> None:
    partial = finished(kinds, "report", Status.PARTIAL)
    failed = finished(kinds, "report", Status.FAILED)
    succeeded = finished(kinds, "report", Status.SUCCEEDED)
    cancelled = finished(kinds, "report", Status.CANCELLED)

    outcome = kinds.bulk("retry_failed_items", [partial, failed, succeeded, cancelled], actor="ops")

    assert sorted(outcome.done) == sorted([partial, failed])
    assert set(outcome.retries) == {partial, failed}
    assert kinds.get(outcome.retries[partial]).retry_of == partial
    assert outcome.skipped[cancelled] == "no failed items"
    assert outcome.skipped[succeeded].startswith("succeeded:")


def test_a_second_bulk_retry_leaves_jobs_already_retried(kinds: Tracker) -> None:
    failed = [finished(kinds, "report", Status.FAILED) for _ in range(3)]
    first = kinds.bulk("retry", failed, actor="ops")

    again = kinds.bulk("retry", where=Filters(statuses=[Status.FAILED]), actor="ops")

    assert again.done == []
    assert again.skipped == {old: f"already retried as {new}" for old, new in first.retries.items()}
    assert kinds.list(trigger="retry").total_count == 3


def test_a_bulk_action_by_filter_reads_every_match_first(kinds: Tracker) -> None:
    mine = [kinds.submit("report", owner="A").id for _ in range(30)]
    theirs = [kinds.submit("report", owner="B").id for _ in range(5)]

    outcome = kinds.bulk("cancel", where=Filters(statuses=[Status.QUEUED]), owner="A")

    assert sorted(outcome.done) == sorted(mine)
    assert {kinds.get(j).status for j in theirs} == {Status.QUEUED}
    nothing = kinds.bulk("cancel", where=Filters(owner="B"), owner="A")
    assert nothing.matched == 0


def test_a_bulk_action_refuses_unclear_or_oversized_requests(kinds: Tracker) -> None:
    with pytest.raises(ValueError, match="either by id or by a filter"):
        kinds.bulk("cancel")
    with pytest.raises(ValueError, match="'explode' is not a valid BulkAction"):
        kinds.bulk("explode", ["x"])
    with pytest.raises(TooManyJobs, match=f"at most {MAX_BULK}"):
        kinds.bulk("cancel", [f"j{n}" for n in range(MAX_BULK + 1)])


@pytest.fixture
def client(kinds: Tracker) -> Iterator[TestClient]:
    with open_client(create_app(kinds, run_worker=False)) as client:
        yield client


def test_the_bulk_endpoint_respects_owner_tokens(kinds: Tracker, client: TestClient) -> None:
    alice = bearer(kinds.ops.create_token("alice", "A"))
    own = [kinds.submit("report", owner="A").id for _ in range(3)]
    other = kinds.submit("report", owner="B").id

    response = client.post(
        f"{API}/jobs/bulk", json={"action": "cancel", "job_ids": [*own, other]}, headers=alice
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(body["done"]) == sorted(own)
    assert body["skipped"] == [{"job_id": other, "reason": "not found"}]
    assert kinds.get(other).status is Status.QUEUED
    assert [e.actor for e in kinds.events(own[0]) if e.type == "cancelled"] == ["alice"]
    by_filter = client.post(
        f"{API}/jobs/bulk",
        json={"action": "cancel", "filter": {"owner": "B", "status": ["queued"]}},
        headers=alice,
    )
    assert by_filter.json()["matched"] == 0


def test_a_bulk_retry_of_another_owners_retried_job_answers_not_found(
    kinds: Tracker, client: TestClient
) -> None:
    alice = bearer(kinds.ops.create_token("alice", "A"))
    theirs = kinds.submit("report", owner="B").id
    kinds.cancel(theirs)
    their_retry = kinds.retry(theirs).id

    for action in ("retry", "retry_failed_items"):
        response = client.post(
            f"{API}/jobs/bulk", json={"action": action, "job_ids": [theirs]}, headers=alice
        )
        assert response.status_code == 200, response.text
        assert response.json()["skipped"] == [{"job_id": theirs, "reason": "not found"}]
        assert their_retry not in response.text


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"action": "cancel"}, "Field required"),
        ({"action": "cancel", "job_ids": ["a"], "filter": {}}, "Extra inputs are not permitted"),
        ({"action": "explode", "job_ids": ["a"]}, "'cancel', 'retry' or 'retry_failed_items'"),
        ({"action": "cancel", "job_ids": []}, "at least 1 item"),
        ({"action": "cancel", "job_ids": ["a b"]}, "String should match pattern"),
        ({"action": "cancel", "filter": {"colour": "red"}}, "Extra inputs are not permitted"),
    ],
)
def test_the_bulk_endpoint_answers_bad_input_with_a_useful_422(
    kinds: Tracker, client: TestClient, body: dict[str, object], detail: str
) -> None:
    admin = bearer(kinds.ops.create_token("admin", None))
    response = client.post(f"{API}/jobs/bulk", json=body, headers=admin)
    assert response.status_code == 422
    assert detail in response.text


def test_the_queues_endpoint_and_the_bulk_endpoint_are_documented(
    kinds: Tracker, client: TestClient
) -> None:
    admin = bearer(kinds.ops.create_token("admin", None))
    kinds.submit("report")
    queues = client.get(f"{API}/queues", headers=admin).json()
    assert [(q["name"], q["queued"], q["workers"]) for q in queues] == [("default", 1, 0)]
    paths = client.get("/openapi.json").json()["paths"]
    bulk = paths[f"{API}/jobs/bulk"]["post"]
    assert {"200", "401", "413", "422"} <= set(bulk["responses"])
    assert "BulkByIds" in str(bulk["requestBody"])
    assert "BulkByFilter" in str(bulk["requestBody"])
    assert "QueueInfo" in str(paths[f"{API}/queues"]["get"]["responses"]["200"])
