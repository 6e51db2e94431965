"""Labels you can search and count: every job's scalar labels are indexed in ``job_labels``,
filter every listing (API, REST, streams' feed, CLI, dashboard) and group statistics."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from jobtrail import Context, Status, StoreError, Tracker
from jobtrail.exceptions import TooManyFilters
from jobtrail.filters import MAX_LABEL_FILTERS, Filters
from jobtrail.jobs import NewJob
from jobtrail.store.tables import job_labels, jobs
from jobtrail.web import create_app
from tests.test_retention import age, finished
from tests.test_store import assert_uses_index, counting, listing
from tests.web.client import API, TESTCLIENT_WARNING, bearer, open_client

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

pytestmark = TESTCLIENT_WARNING

JOBTRAIL = str(Path(sys.executable).parent / "jobtrail")


@pytest.fixture
def ingest(tracker: Tracker) -> Tracker:
    """Documents of three types: two pdfs (one urgent), a docx and an unlabelled job."""

    @tracker.job("ingest")
    def ingest(ctx: Context, doc: str) -> None: ...

    tracker.submit("ingest", {"doc": "a"}, labels={"document_type": "pdf", "pages": 3})
    tracker.submit("ingest", {"doc": "b"}, labels={"document_type": "pdf", "urgent": True})
    tracker.submit("ingest", {"doc": "c"}, labels={"document_type": "docx"}, owner="A")
    tracker.submit("ingest", {"doc": "d"})
    return tracker


def docs(page_jobs: Any) -> list[str]:
    return sorted(job.payload["doc"] for job in page_jobs)


def label_rows(tracker: Tracker) -> list[tuple[str, str, str]]:
    with tracker.store.database.engine.connect() as conn:
        rows = conn.execute(sa.select(job_labels.c.job_id, job_labels.c.key, job_labels.c.value))
        return sorted((r.job_id, r.key, r.value) for r in rows)


# -- filtering --------------------------------------------------------------------------


def test_a_listing_filtered_by_labels_returns_only_jobs_having_all_of_them(
    ingest: Tracker,
) -> None:
    assert docs(ingest.list(labels={"document_type": "pdf"}).jobs) == ["a", "b"]
    assert docs(ingest.list(labels={"document_type": "pdf", "urgent": True}).jobs) == ["b"]
    assert ingest.list(labels={"document_type": "pdf"}).total_count == 2
    assert ingest.list(labels={"document_type": "xlsx"}).total_count == 0


def test_numbers_and_booleans_match_their_json_text(ingest: Tracker) -> None:
    assert docs(ingest.list(labels={"pages": 3}).jobs) == ["a"]
    assert docs(ingest.list(labels={"pages": "3"}).jobs) == ["a"]
    assert docs(ingest.list(labels={"urgent": "true"}).jobs) == ["b"]
    assert ingest.list(labels={"urgent": False}).total_count == 0


def test_labels_combine_with_the_other_filters(ingest: Tracker) -> None:
    assert docs(ingest.list(owner="A", labels={"document_type": "docx"}).jobs) == ["c"]
    assert ingest.list(owner="A", labels={"document_type": "pdf"}).total_count == 0
    assert ingest.list(status="running", labels={"document_type": "pdf"}).total_count == 0


def test_a_non_scalar_label_filter_is_refused(tracker: Tracker) -> None:
    with pytest.raises(ValueError, match="label 'tags'"):
        tracker.list(labels={"tags": ["a", "b"]})


def test_tracked_external_and_retried_jobs_are_filterable_by_their_labels(
    tracker: Tracker,
) -> None:
    with (
        pytest.raises(ValueError, match="boom"),
        tracker.track("import", labels={"source": "s3"}) as ctx,
    ):
        raise ValueError("boom")
    tracker.add(NewJob("remote", labels={"source": "s3", "nested": {"not": "indexed"}}))
    retried = tracker.retry(ctx.job_id)

    found = tracker.list(labels={"source": "s3"}).jobs
    assert {job.id for job in found} >= {ctx.job_id, retried.id}
    assert len(found) == 3
    assert not [row for row in label_rows(tracker) if row[1] == "nested"]


def test_a_purge_deletes_the_labels_of_the_jobs_it_deletes(tracker: Tracker) -> None:
    @tracker.job("report")
    def report(ctx: Context) -> None: ...

    old = finished(tracker, "report", Status.SUCCEEDED)
    young = tracker.submit("report", labels={"team": "ops"})
    with tracker.store.database.engine.begin() as conn:
        conn.execute(job_labels.insert(), [{"job_id": old, "key": "team", "value": "ops"}])
    age(tracker, old, created=10, completed=10, duration=1.0)

    assert tracker.purge() == 1

    assert label_rows(tracker) == [(young.id, "team", "ops")]


def test_the_change_feed_of_streams_takes_label_filters(ingest: Tracker) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    changed = ingest.ops.changes(since, Filters.of(labels={"document_type": "docx"}))
    assert docs(changed) == ["c"]


# -- statistics -------------------------------------------------------------------------


def test_stats_grouped_by_a_label_give_the_figures_of_each_value(ingest: Tracker) -> None:
    with ingest.track("ingest", labels={"document_type": "pdf"}):
        pass

    stats = ingest.stats(group_by="label:document_type")

    assert stats.total_jobs == 5
    assert list(stats.groups) == ["pdf", "docx"]  # the largest group first
    pdf = stats.groups["pdf"]
    assert (pdf.total_jobs, pdf.active_jobs, pdf.success_rate) == (3, 2, 1.0)
    assert pdf.jobs_by_status == {"queued": 2, "succeeded": 1}
    assert stats.groups["docx"].total_jobs == 1
    assert stats.groups["pdf"].groups == {}


def test_stats_group_by_kind_and_by_owner_name_unowned_jobs_with_an_empty_owner(
    ingest: Tracker,
) -> None:
    by_owner = ingest.stats(group_by="owner").groups
    by_kind = ingest.stats(group_by="kind", labels={"document_type": "pdf"}).groups

    assert {owner: s.total_jobs for owner, s in by_owner.items()} == {"": 3, "A": 1}
    assert {kind: s.total_jobs for kind, s in by_kind.items()} == {"ingest": 2}


def test_stats_refuse_an_unknown_grouping(tracker: Tracker) -> None:
    with pytest.raises(ValueError, match="group_by"):
        tracker.stats(group_by="colour")


def test_stats_grouped_by_kind_count_purged_jobs_through_their_rollups(
    tracker: Tracker,
) -> None:
    @tracker.job("report")
    def report(ctx: Context) -> None: ...

    old = finished(tracker, "report", Status.SUCCEEDED)
    age(tracker, old, created=10, completed=10, duration=1.0)
    tracker.submit("report")
    assert tracker.purge() == 1

    assert tracker.stats(days=30, group_by="kind").groups["report"].total_jobs == 2


# -- indexes ----------------------------------------------------------------------------


def test_a_label_filter_reads_the_label_index(tracker: Tracker) -> None:
    store = tracker.store
    one = Filters.of(labels={"document_type": "pdf"})
    assert_uses_index(store, listing(one), "ix_job_labels_key_value_job_id")
    assert_uses_index(store, counting(one), "ix_job_labels_key_value_job_id")
    grouped = (
        sa.select(job_labels.c.value, sa.func.count())
        .join(jobs, jobs.c.id == job_labels.c.job_id)
        .where(job_labels.c.key == "document_type")
        .group_by(job_labels.c.value)
    )
    assert_uses_index(store, grouped, "ix_job_labels_key_value_job_id")


# -- REST -------------------------------------------------------------------------------


@pytest.fixture
def client(ingest: Tracker) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    """A client of the app without a worker, with an admin's and owner A's headers."""
    with open_client(create_app(ingest, run_worker=False)) as test_client:
        admin = bearer(ingest.ops.create_token("admin", None))
        alice = bearer(ingest.ops.create_token("alice", "A"))
        yield test_client, admin, alice


def test_get_jobs_filters_by_repeated_label_parameters(
    client: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    http, admin, alice = client
    pdf = http.get(f"{API}/jobs?label=document_type:pdf", headers=admin).json()
    urgent = http.get(
        f"{API}/jobs", params=[("label", "document_type:pdf"), ("label", "urgent:true")],
        headers=admin,
    ).json()  # fmt: skip
    theirs = http.get(f"{API}/jobs?label=document_type:pdf", headers=alice).json()

    assert sorted(j["payload"]["doc"] for j in pdf["jobs"]) == ["a", "b"]
    assert [j["payload"]["doc"] for j in urgent["jobs"]] == ["b"]
    assert theirs["total_count"] == 0  # owner A has a docx only


@pytest.mark.parametrize("bad", ["document_type", ":pdf", "k\x00:v", "k" * 101 + ":v"])
def test_a_label_parameter_that_is_not_key_colon_value_is_a_422(
    client: tuple[TestClient, dict[str, str], dict[str, str]], bad: str
) -> None:
    http, admin, _alice = client
    response = http.get(f"{API}/jobs", params={"label": bad}, headers=admin)
    assert response.status_code == 422, response.text
    assert "label" in response.text


def too_many_labels(n: int = MAX_LABEL_FILTERS + 1) -> list[tuple[str, str]]:
    return [("label", f"k{i}:v") for i in range(n)]


@pytest.mark.parametrize("path", ["/jobs", "/stats", "/stream"])
def test_more_label_filters_than_the_cap_are_a_clear_422_everywhere(
    client: tuple[TestClient, dict[str, str], dict[str, str]], path: str
) -> None:
    http, admin, alice = client
    for headers in (admin, alice):
        response = http.get(f"{API}{path}", params=too_many_labels(), headers=headers)
        assert response.status_code == 422, response.text
        assert f"at most {MAX_LABEL_FILTERS}" in response.text
    bulk = http.post(
        f"{API}/jobs/bulk",
        json={"action": "cancel", "filter": {"label": [f"k{i}:v" for i in range(100)]}},
        headers=admin,
    )
    assert bulk.status_code == 422, bulk.text
    assert f"at most {MAX_LABEL_FILTERS}" in bulk.text
    http.cookies.set("jobtrail_token", admin["Authorization"][7:])
    page = http.get("/jobs", params=too_many_labels(1000), headers=admin)  # past SQLite's limit
    assert page.status_code == 422
    assert f"at most {MAX_LABEL_FILTERS} are taken" in page.text
    assert "text/html" in page.headers["content-type"]


def test_a_nul_in_a_dashboard_filter_answers_an_html_page(
    client: tuple[TestClient, dict[str, str], dict[str, str]], ingest: Tracker
) -> None:
    http, admin, _alice = client
    http.cookies.set("jobtrail_token", admin["Authorization"][7:])
    page = http.get("/jobs", params={"kind": "pdf\x00"}, headers=admin)
    assert "text/html" in page.headers["content-type"], page.text
    # PostgreSQL refuses NUL in text (422); SQLite compares it like any character.
    postgres = ingest.store.database.dialect == "postgresql"
    assert page.status_code == (422 if postgres else 200)


def test_as_many_label_filters_as_the_cap_match_jobs_having_all_of_them(
    client: tuple[TestClient, dict[str, str], dict[str, str]], ingest: Tracker
) -> None:
    http, admin, _alice = client
    labels = {f"k{i}": "v" for i in range(MAX_LABEL_FILTERS)}
    full = ingest.submit("ingest", {"doc": "full"}, labels=labels)
    ingest.submit("ingest", {"doc": "all but one"}, labels=labels | {"k0": "other"})
    ingest.submit("ingest", {"doc": "fewer"}, labels={"k0": "v", "k1": "v"})

    started = time.monotonic()
    response = http.get(f"{API}/jobs", params=too_many_labels(MAX_LABEL_FILTERS), headers=admin)
    took = time.monotonic() - started

    assert response.status_code == 200, response.text
    assert [j["id"] for j in response.json()["jobs"]] == [full.id]
    assert took < 5.0, f"{MAX_LABEL_FILTERS} label filters took {took:.1f} s"
    with pytest.raises(TooManyFilters):
        ingest.list(labels={f"k{i}": "v" for i in range(MAX_LABEL_FILTERS + 1)})


def test_a_postgresql_statement_past_the_timeout_is_cancelled(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no statement timeout (its one writer is never held by a reader)")
    with Tracker(database_url, statement_timeout=0.2) as tracker:
        started = time.monotonic()
        with (
            pytest.raises(StoreError, match="statement timeout"),
            tracker.store.database.read() as conn,
        ):
            conn.execute(sa.text("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 3.0
        assert tracker.list().total_count == 0  # its pooled connection still serves


def test_get_stats_groups_by_a_label_and_stays_compatible_without_it(
    client: tuple[TestClient, dict[str, str], dict[str, str]],
) -> None:
    http, admin, _alice = client
    plain = http.get(f"{API}/stats", headers=admin).json()
    grouped = http.get(f"{API}/stats?group_by=label:document_type", headers=admin).json()
    filtered = http.get(f"{API}/stats?label=document_type:docx", headers=admin).json()
    refused = http.get(f"{API}/stats?group_by=colour", headers=admin)

    assert plain["total_jobs"] == 4
    assert plain["groups"] == {}
    assert {k: v["total_jobs"] for k, v in grouped["groups"].items()} == {"pdf": 2, "docx": 1}
    assert grouped["groups"]["pdf"]["jobs_by_status"] == {"queued": 2}
    assert filtered["total_jobs"] == 1
    assert refused.status_code == 422


def test_the_dashboard_history_filters_by_a_label(
    client: tuple[TestClient, dict[str, str], dict[str, str]], ingest: Tracker
) -> None:
    http, admin, _alice = client
    http.cookies.set("jobtrail_token", admin["Authorization"][7:])
    docx = ingest.list(labels={"document_type": "docx"}).jobs[0]

    page = http.get("/jobs?label=document_type:docx", headers=admin)

    assert page.status_code == 200, page.text
    assert docx.id in page.text
    assert "1 job ·" in page.text  # one job, not "1 jobs"
    assert 'value="document_type:docx"' in page.text


def test_the_dashboard_history_of_an_owner_filtered_on_another_owner_lists_nothing(
    client: tuple[TestClient, dict[str, str], dict[str, str]], ingest: Tracker
) -> None:
    http, _admin, alice = client
    http.cookies.set("jobtrail_token", alice["Authorization"][7:])
    own = ingest.list(owner="A").jobs[0]
    api = http.get(f"{API}/jobs?owner=someone-else", headers=alice).json()

    for query in ("owner=someone-else", "q=owner:someone-else"):
        page = http.get(f"/jobs?{query}", headers=alice)
        assert page.status_code == 200, page.text
        assert own.id not in page.text
        assert "0 jobs" in page.text
        assert "&#34;owner&#34;: &#34;someone-else&#34;" in page.text  # what "all that match" sends
    assert api["total_count"] == 0
    assert "0 jobs" not in http.get("/jobs?owner=A", headers=alice).text


# -- CLI --------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOBTRAIL, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_cli_lists_by_label_and_groups_stats_by_label(
    ingest: Tracker, database_url: str
) -> None:
    listed = run_cli(
        "jobs", "ls", "--database-url", database_url, "--label", "document_type:pdf", "--json"
    )
    grouped = run_cli("stats", "--database-url", database_url, "--group-by", "label:document_type")
    refused = run_cli("jobs", "ls", "--database-url", database_url, "--label", "pdf")

    assert listed.returncode == 0, listed.stderr
    assert '"total_count": 2' in listed.stdout
    assert grouped.returncode == 0, grouped.stderr
    assert "pdf" in grouped.stdout
    assert "docx" in grouped.stdout
    assert refused.returncode == 2
    assert "KEY:VALUE" in refused.stderr
