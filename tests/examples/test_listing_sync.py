"""The listing sync example over real HTTP: its app and its fake insights API, each served by
uvicorn on a free loopback port, on a real store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from examples.listing_sync.upstream import DAYS, LISTINGS

from jobtrail.store.database import create_engine
from tests.examples.processes import Fleet, Served, serve
from tests.waiting import until

APP = "examples.listing_sync.app:app"
UPSTREAM = "examples.listing_sync.upstream:app"
FAILING = ["L03", "L07"]
GOOD = sorted(set(LISTINGS) - set(FAILING))
QUICK = {"LISTING_SYNC_RETRY_BACKOFF": "0.05", "LISTING_SYNC_RATE": "50/second"}
Json = dict[str, Any]


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('listing') / 'listing.db'}"


@pytest.fixture(scope="module")
def upstream(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = serve(UPSTREAM, tmp_path_factory.mktemp("upstream") / "upstream.log", store_url)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def app(
    upstream: Served, store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The app with one worker thread, so a second sync waits while the first runs."""
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = QUICK | {"LISTING_SYNC_UPSTREAM_URL": upstream.url, "JOBTRAIL_CONCURRENCY": "1"}
    served = serve(APP, log, store_url, **env)
    yield served
    served.stop()


def fleet_on(database_url: str, tmp_path: Path) -> Iterator[Fleet]:
    started = Fleet(tmp_path, database_url)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def fleet(database_url: str, tmp_path: Path) -> Iterator[Fleet]:
    """Apps and upstreams a test starts on the test's store (a SQLite file, PostgreSQL)."""
    yield from fleet_on(database_url, tmp_path)


@pytest.fixture
def sqlite_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """The same on a SQLite file, for behaviour the store does not change."""
    yield from fleet_on(f"sqlite:///{tmp_path / 'listing.db'}", tmp_path)


@pytest.fixture
def client(app: Served) -> Iterator[httpx.Client]:
    with app.client() as c:
        yield c


def create(client: httpx.Client, account_id: str, api_key: str, **extra: Any) -> httpx.Response:
    credentials = {"api_key": api_key}
    body = {"account_id": account_id, "name": f"Host {account_id}", "credentials": credentials}
    return client.post("/api/v1/accounts", json=body | extra)


def start_sync(client: httpx.Client, account_id: str) -> str:
    response = client.post(f"/api/v1/accounts/{account_id}/sync")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["message"] == "Sync initiated"
    assert body["status_url"] == f"/api/v1/sync-jobs/{body['job_id']}"
    job_id: str = body["job_id"]
    return job_id


def sync_job(client: httpx.Client, job_id: str) -> Json:
    response = client.get(f"/api/v1/sync-jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: Json = response.json()
    return job


def finished(client: httpx.Client, job_id: str, timeout: float = 30) -> Json:
    def done() -> Json:
        job = sync_job(client, job_id)
        return {} if job["status"] in ("pending", "running") else job

    return until(done, timeout, what=f"sync job {job_id} to finish", poll=0.05)


def rows(store_url: str, account_id: str) -> Counter[tuple[str, str]]:
    """How many metric rows the app wrote per (listing, day) of the account."""
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT listing_id, date FROM listing_metrics WHERE account_id = :a"),
                {"a": account_id},
            )
            return Counter((listing, str(day)) for listing, day in found)
    finally:
        engine.dispose()


def expected_rows(listings: list[str]) -> Counter[tuple[str, str]]:
    return Counter((listing, day.isoformat()) for listing in listings for day in DAYS)


# -- accounts --------------------------------------------------------------------------------


def test_valid_credentials_are_checked_upstream_and_show_the_first_five_listings(
    client: httpx.Client,
) -> None:
    response = create(client, "cred-ok", "valid-cred-ok")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["validation"] == {
        "valid": True,
        "listing_count": 10,
        "listings": [{"id": i, "name": LISTINGS[i]} for i in ["L01", "L02", "L03", "L04", "L05"]],
    }
    assert "api_key" not in body
    assert body["last_sync_at"] is None


def test_invalid_credentials_are_a_400_and_save_nothing(client: httpx.Client) -> None:
    response = create(client, "cred-bad", "stolen-key")
    assert response.status_code == 400
    assert response.json()["detail"] == "Invalid account credentials: invalid API key"
    assert client.get("/api/v1/accounts/cred-bad").status_code == 404


def test_an_account_without_listings_validates_with_none(client: httpx.Client) -> None:
    response = create(client, "cred-empty", "valid-empty")
    assert response.status_code == 201, response.text
    assert response.json()["validation"] == {"valid": True, "listing_count": 0, "listings": []}


def test_skipped_validation_saves_even_credentials_upstream_would_refuse(
    client: httpx.Client,
) -> None:
    response = create(client, "cred-skip", "not-checked", skip_validation=True)
    assert response.status_code == 201, response.text
    assert response.json()["validation"] is None
    assert client.get("/api/v1/accounts/cred-skip").json()["name"] == "Host cred-skip"


def test_odd_input_is_a_4xx_with_a_detail(client: httpx.Client) -> None:
    assert create(client, "cred-ok2", "valid-x").status_code == 201
    taken = create(client, "cred-ok2", "valid-x")
    assert taken.status_code == 409
    assert "already exists" in taken.json()["detail"]
    bad_fields: list[Json] = [
        {"account_id": "a b"},
        {"account_id": ""},
        {"name": "nul\x00"},
        {"credentials": {}},
        {"credentials": {"api_key": "valid-\n"}},
        {"credentials": {"api_key": "valid-é"}},
    ]
    for bad in bad_fields:
        body = {"account_id": "x", "name": "x", "credentials": {"api_key": "valid-x"}} | bad
        response = client.post("/api/v1/accounts", json=body)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["detail"]
    assert client.get("/api/v1/accounts/cred-ok2/sync-jobs?limit=0").status_code == 422
    assert client.get("/api/v1/accounts/cred-ok2/sync-jobs?offset=-1").status_code == 422


def test_unknown_accounts_and_jobs_are_404s(client: httpx.Client) -> None:
    for response in (
        client.post("/api/v1/accounts/nobody/sync"),
        client.get("/api/v1/accounts/nobody/sync-jobs"),
        client.get("/api/v1/sync-jobs/no-such-job"),
    ):
        assert response.status_code == 404
        assert "not found" in response.json()["detail"]


# -- syncing ---------------------------------------------------------------------------------


def test_a_manual_sync_is_pending_then_running_then_partial_with_the_failing_listings(
    client: httpx.Client, store_url: str
) -> None:
    assert create(client, "host-1", "valid-host-1").status_code == 201
    first = start_sync(client, "host-1")
    until(lambda: sync_job(client, first)["status"] == "running", 10, what="the first sync")
    second = start_sync(client, "host-1")  # the one worker thread is busy with the first
    assert sync_job(client, second)["status"] == "pending"

    job = finished(client, first)
    assert job["status"] == "partial"
    assert job["job_type"] == "manual"
    assert job["account_id"] == "host-1"
    assert (job["total_listings"], job["succeeded_listings"], job["failed_listings"]) == (10, 8, 2)
    errors = job["error_details"]["listing_errors"]
    assert [(e["listing_id"], e["listing_name"]) for e in errors] == [
        (i, LISTINGS[i]) for i in FAILING
    ]
    assert {e["error_type"] for e in errors} == {"HTTPStatusError"}
    assert all("500" in e["error"] for e in errors)
    assert job["started_at"] <= job["completed_at"]
    assert finished(client, second)["status"] == "partial"
    assert rows(store_url, "host-1") == expected_rows(GOOD)  # once each, after two syncs
    assert client.get("/api/v1/accounts/host-1").json()["last_sync_at"] is not None


def test_429_and_503_from_upstream_are_absorbed_and_shown_as_job_events(
    client: httpx.Client,
) -> None:
    assert create(client, "host-2", "valid-host-2").status_code == 201
    job = finished(client, start_sync(client, "host-2"))
    failed = {e["listing_id"] for e in job["error_details"]["listing_errors"]}
    assert failed == set(FAILING)  # L05 and L09 recovered
    events = client.get(f"/jobtrail/api/v1/jobs/{job['job_id']}/events").json()["events"]
    waits = [e["message"] for e in events if e["type"] == "log"]
    assert [m for m in waits if m.startswith("HTTP 429")] == [
        "HTTP 429 from 127.0.0.1, retrying in 1.0 s (attempt 2 of 4)"
    ]
    assert len([m for m in waits if m.startswith("HTTP 503")]) == 2


def test_an_account_without_listings_syncs_nothing_and_is_not_marked_synced(
    client: httpx.Client, store_url: str
) -> None:
    assert create(client, "host-empty", "valid-empty").status_code == 201
    job = finished(client, start_sync(client, "host-empty"))
    assert job["status"] == "succeeded"
    assert job["total_listings"] == 0
    assert client.get("/api/v1/accounts/host-empty").json()["last_sync_at"] is None
    assert rows(store_url, "host-empty") == Counter()


def test_an_accounts_sync_jobs_are_listed_newest_first_a_page_at_a_time(
    client: httpx.Client,
) -> None:
    assert create(client, "pager", "valid-empty").status_code == 201
    started = [start_sync(client, "pager") for _ in range(5)]
    for job_id in started:
        finished(client, job_id)
    first = client.get("/api/v1/accounts/pager/sync-jobs?limit=2&offset=0").json()
    rest = client.get("/api/v1/accounts/pager/sync-jobs", params={"limit": 50, "offset": 2}).json()
    assert first["total_count"] == rest["total_count"] == 5
    listed = [j["job_id"] for j in first["jobs"] + rest["jobs"]]
    assert listed == started[::-1]
    assert len(first["jobs"]) == 2
    assert {j["account_id"] for j in first["jobs"] + rest["jobs"]} == {"pager"}


def test_startup_and_scheduled_syncs_cover_the_accounts(
    upstream: Served, sqlite_fleet: Fleet
) -> None:
    """Accounts made on one run: the next start syncs those never synced (``startup``), and the
    schedule syncs every active account (``scheduled``)."""
    env = QUICK | {"LISTING_SYNC_UPSTREAM_URL": upstream.url, "JOBTRAIL_STARTUP_WINDOW": "0.2"}
    first = sqlite_fleet.serve(APP, "first", **env)
    with first.client() as client:
        for name in ("never-a", "never-b"):
            assert create(client, name, "valid-empty").status_code == 201
    first.stop()

    again = sqlite_fleet.serve(APP, "again", **env, LISTING_SYNC_INTERVAL="1")
    with again.client() as client:
        for name in ("never-a", "never-b"):

            def types(account: str = name) -> set[str]:
                page = client.get(f"/api/v1/accounts/{account}/sync-jobs").json()
                return {j["job_type"] for j in page["jobs"] if j["status"] == "succeeded"}

            until(lambda: types() >= {"startup", "scheduled"}, 20, what=f"{name}'s syncs")


# On PostgreSQL (the other tests run on SQLite): the app's own tables and jobtrail's requeue on
# the second dialect, at the price of one more pair of app starts only.
@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_sigterm_mid_sync_stops_at_a_listing_and_a_restart_finishes_without_duplicates(
    upstream: Served, fleet: Fleet
) -> None:
    env = QUICK | {"LISTING_SYNC_UPSTREAM_URL": upstream.url, "JOBTRAIL_GRACE_PERIOD": "5"}
    first = fleet.serve(APP, "first", **env)
    with first.client() as client:
        # A slow key of its own: the upstream counts faults per key.
        assert create(client, "host-term", "valid-slow-term").status_code == 201
        job_id = start_sync(client, "host-term")
        until(lambda: sync_job(client, job_id)["succeeded_listings"] >= 2, 20, what="2 done")
    first.stop()
    written = rows(fleet.database_url, "host-term")
    assert 0 < len(written) < len(expected_rows(GOOD))  # stopped mid-sync ...
    assert set(written.values()) == {1}
    assert len(written) % len(DAYS) == 0  # ... between listings, never inside one

    again = fleet.serve(APP, "again", **env)
    with again.client() as client:
        assert sync_job(client, job_id)["status"] in ("pending", "running")
        job = finished(client, job_id)
        events = client.get(f"/jobtrail/api/v1/jobs/{job_id}/events").json()["events"]
    assert job["status"] == "partial"
    assert [e["listing_id"] for e in job["error_details"]["listing_errors"]] == FAILING
    assert "interrupted" in [e["type"] for e in events]
    assert rows(fleet.database_url, "host-term") == expected_rows(GOOD)
