"""Failed items: read a page at a time (Python, REST API, dashboard), and bounded per job —
past ``max_failed_items`` they are counted, not listed, whether a handler in a worker or a
reporter over HTTP failed them — on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from jobtrail import Context, FailedItem, ItemsNotListed, Status, Tracker
from jobtrail.jobs import NewFailedItem, NewJob
from jobtrail.store.tables import job_items
from jobtrail.web import create_app
from tests.test_store import assert_uses_index, has_sort
from tests.web.client import API, TESTCLIENT_WARNING, open_client

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

pytestmark = TESTCLIENT_WARNING

BOUND = 5


def external(tracker: Tracker) -> str:
    """A running external job's id."""
    job, _ = tracker.add(NewJob("export", None, status=Status.RUNNING))
    return job.id


def failures(start: int, stop: int) -> list[NewFailedItem]:
    return [
        NewFailedItem(f"item-{n}", "TimeoutError", f"item {n} timed out")
        for n in range(start, stop)
    ]


def every_page(tracker: Tracker, job_id: str, limit: int) -> Iterator[list[FailedItem]]:
    """The pages of a job's failed items, following ``next_after`` to the end."""
    after: int | None = 0
    while after is not None:
        page = tracker.failed_item_page(job_id, after=after, limit=limit)
        assert len(page.items) <= limit
        yield list(page.items)
        after = page.next_after


@pytest.fixture
def bounded(database_url: str) -> Iterator[Tracker]:
    """A tracker that lists at most ``BOUND`` failed items a job, with a kind failing some."""
    with Tracker(
        database_url, flush_interval=0.01, poll_interval=0.02, max_failed_items=BOUND
    ) as t:

        @t.job("sync")
        def sync(ctx: Context, items: int, failing: int) -> None:
            for n in ctx.items(range(items)):
                with ctx.item(f"item-{n}"):
                    if n < failing:
                        raise TimeoutError(f"item {n} timed out")

        yield t


def client_of(tracker: Tracker) -> tuple[TestClient, dict[str, str]]:
    token = tracker.ops.create_token("admin", None)
    client = open_client(create_app(tracker, run_worker=False, maintain=False))
    client.cookies.set("jobtrail_token", token)
    return client, {"Authorization": f"Bearer {token}"}


# -- paging ------------------------------------------------------------------------------------


def test_pages_hold_every_item_once_in_order_while_items_are_added(tracker: Tracker) -> None:
    job_id = external(tracker)
    tracker.report_items(job_id, failures(0, 250))
    pages = every_page(tracker, job_id, limit=100)
    seen = next(pages)
    tracker.report_items(job_id, failures(250, 260))  # added while a reader pages
    for more in pages:
        seen += more
    assert [i.item_id for i in seen] == [f"item-{n}" for n in range(260)]
    assert [i.id for i in seen] == sorted({i.id for i in seen})
    page = tracker.failed_item_page(job_id, limit=100)
    assert (page.total, page.limit, page.next_after, page.full) == (260, 100, seen[99].id, False)
    last = tracker.failed_item_page(job_id, after=seen[199].id, limit=100)
    assert [i.item_id for i in last.items] == [f"item-{n}" for n in range(200, 260)]
    assert last.next_after is None
    assert tracker.failed_items(job_id, after=seen[9].id, limit=3) == seen[10:13]
    assert tracker.failed_items(job_id) == seen


def test_a_page_of_failed_items_reads_the_job_and_id_index_without_sorting(
    tracker: Tracker,
) -> None:
    c = job_items.c
    page = sa.select(job_items).where(c.job_id == "j", c.id > 7).order_by(c.id).limit(101)
    text = assert_uses_index(tracker.store, page, "ix_job_items_job_id_id")
    assert not has_sort(tracker.store, text), text
    count = sa.select(sa.func.count()).where(c.job_id == "j")
    assert_uses_index(tracker.store, count, "ix_job_items_job_id_id")


@pytest.mark.parametrize("limit", [0, 1001])
def test_a_page_size_outside_1_to_1000_is_refused(tracker: Tracker, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        tracker.failed_item_page(external(tracker), limit=limit)


# -- the bound -----------------------------------------------------------------------------------


def listed_full(tracker: Tracker, job_id: str) -> list[Any]:
    """The data of the job's events saying its list of failed items is full."""
    return [
        e.data
        for e in tracker.events(job_id)
        if e.type == "log" and isinstance(e.data, dict) and "max_failed_items" in e.data
    ]


def test_a_handler_failing_past_the_bound_keeps_its_counts_and_lists_only_the_bound(
    bounded: Tracker,
) -> None:
    job = bounded.submit("sync", {"items": 60, "failing": 40})
    with bounded.worker(1):
        done = bounded.wait(job.id, timeout=30)
    assert done.status is Status.PARTIAL
    assert (done.items_total, done.items_failed, done.items_succeeded) == (60, 40, 20)
    assert done.progress == 100.0
    listed = bounded.failed_items(job.id)
    assert [i.item_id for i in listed] == [f"item-{n}" for n in range(BOUND)]
    assert len([e for e in bounded.events(job.id) if e.type == "item_failed"]) == BOUND
    assert listed_full(bounded, job.id) == [{"max_failed_items": BOUND}]
    assert isinstance(done.error_details, dict)
    assert done.error_details["failed_items_count"] == 40
    page = bounded.failed_item_page(job.id)
    assert (page.total, page.full, page.next_after) == (BOUND, True, None)


def test_reports_past_the_bound_are_counted_not_listed_and_said_once(bounded: Tracker) -> None:
    job_id = external(bounded)
    bounded.report_items(job_id, failures(0, 3))
    crossing = bounded.report_items(job_id, failures(3, 7))  # two fit
    after = bounded.report_items(job_id, failures(7, 10))  # none fits
    assert (crossing.items_failed, after.items_failed) == (7, 10)
    listed = bounded.failed_items(job_id)
    assert [i.item_id for i in listed] == [f"item-{n}" for n in range(BOUND)]
    assert len([e for e in bounded.events(job_id) if e.type == "item_failed"]) == BOUND
    assert listed_full(bounded, job_id) == [{"max_failed_items": BOUND}]
    assert bounded.failed_item_page(job_id).full


def test_a_retry_of_only_the_failed_items_is_refused_when_some_are_not_listed(
    bounded: Tracker,
) -> None:
    job = bounded.submit("sync", {"items": 10, "failing": 8})
    with bounded.worker(1):
        bounded.wait(job.id, timeout=30)
    with pytest.raises(ItemsNotListed, match="failed 8 items but lists only 5"):
        bounded.retry(job.id, only_failed_items=True)
    assert bounded.retry(job.id).retry_of == job.id  # the whole job still retries


# -- the REST API and the dashboard -----------------------------------------------------------


def test_get_items_answers_at_most_limit_and_pages_with_next_after(tracker: Tracker) -> None:
    job_id = external(tracker)
    tracker.report_items(job_id, failures(0, 250))
    client, admin = client_of(tracker)
    url = f"{API}/jobs/{job_id}/items"
    with client:
        first = client.get(url, headers=admin).json()
        assert set(first) == {"items", "total", "limit", "next_after", "full"}
        assert (len(first["items"]), first["total"], first["limit"]) == (100, 250, 100)
        assert first["next_after"] == first["items"][-1]["id"]
        seen = [i["item_id"] for i in first["items"]]
        after = first["next_after"]
        while after is not None:
            page = client.get(url, params={"after": after, "limit": 70}, headers=admin).json()
            assert len(page["items"]) <= 70
            seen += [i["item_id"] for i in page["items"]]
            after = page["next_after"]
        assert seen == [f"item-{n}" for n in range(250)]
        everything = client.get(url, params={"limit": 1000}, headers=admin).json()
        assert (len(everything["items"]), everything["next_after"]) == (250, None)
        for bad in ({"limit": 0}, {"limit": 1001}, {"after": -1}):
            assert client.get(url, params=bad, headers=admin).status_code == 422


def test_posts_past_the_bound_are_accepted_and_counted(bounded: Tracker) -> None:
    job_id = external(bounded)
    client, admin = client_of(bounded)
    body = {"items": [{"item_id": f"doc-{n}", "error_type": "E"} for n in range(8)]}
    with client:
        posted = client.post(f"{API}/jobs/{job_id}/items", json=body, headers=admin)
        assert posted.status_code == 201, posted.text
        assert posted.json()["items_failed"] == 8
        again = client.post(f"{API}/jobs/{job_id}/items", json=body, headers=admin)
        assert again.json()["items_failed"] == 16
        page = client.get(f"{API}/jobs/{job_id}/items", headers=admin).json()
        assert (page["total"], page["full"]) == (BOUND, True)
        retry = client.post(f"{API}/jobs/{job_id}/retry?only_failed_items=true", headers=admin)
    assert retry.status_code == 409  # the external job is still running
    assert listed_full(bounded, job_id) == [{"max_failed_items": BOUND}]


def test_the_openapi_document_shows_the_page_of_failed_items(tracker: Tracker) -> None:
    client, _ = client_of(tracker)
    with client:
        document = client.get("/openapi.json").json()
    get = document["paths"]["/api/v1/jobs/{job_id}/items"]["get"]
    assert {p["name"] for p in get["parameters"]} >= {"after", "limit"}
    answer = get["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/FailedItemsResponse"}
    page = document["components"]["schemas"]["FailedItemsResponse"]
    assert set(page["properties"]) == {"items", "total", "limit", "next_after", "full"}
    assert "max_failed_items" in page["properties"]["full"]["description"]


def rows(html: str) -> list[str]:
    return re.findall(r'<td class="mono">([^<]*)</td>', html)


def test_the_job_page_shows_a_page_of_failed_items_and_links_to_the_next(
    tracker: Tracker,
) -> None:
    job_id = external(tracker)
    tracker.report_items(job_id, failures(0, 150))
    client, _ = client_of(tracker)
    with client:
        first = client.get(f"/jobs/{job_id}").text
        assert rows(first) == [f"item-{n}" for n in range(100)]
        assert "150 failed items" in first
        link = re.search(r'href="([^"]*items_after=\d+)[^"]*" rel="next"', first)
        assert link is not None
        second = client.get(link.group(1).replace("&amp;", "&")).text
        assert rows(second) == [f"item-{n}" for n in range(100, 150)]
        assert 'rel="next"' not in second
        assert 'rel="first"' in second


def test_the_job_page_of_a_full_list_says_the_rest_are_only_counted(bounded: Tracker) -> None:
    job = bounded.submit("sync", {"items": 10, "failing": 8})
    with bounded.worker(1):
        bounded.wait(job.id, timeout=30)
    client, _ = client_of(bounded)
    with client:
        page = client.get(f"/jobs/{job.id}").text
    assert rows(page) == [f"item-{n}" for n in range(BOUND)]
    assert "8 failed items, 5 listed" in page
    assert 'id="items-full"' in page
    assert re.search(r'id="retry-failed"\s+hidden', page)
