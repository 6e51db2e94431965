"""Listing sync: host accounts whose per-listing insights are synced from an upstream API by
jobtrail jobs (manual, scheduled and at startup), with the jobtrail dashboard at ``/jobtrail/``.

``uvicorn examples.listing_sync.app:app --port 8000``; settings from the environment:
``JOBTRAIL_DATABASE_URL`` (jobtrail's store and this app's tables), ``LISTING_SYNC_UPSTREAM_URL``,
``LISTING_SYNC_RATE`` / ``LISTING_SYNC_BURST`` (outgoing calls), ``LISTING_SYNC_RETRY_BACKOFF``
(seconds), ``LISTING_SYNC_INTERVAL`` (seconds between scheduled syncs of every account) and
``LISTING_SYNC_ONCALL`` (an apprise URL told of failed syncs and scheduled syncs that never ran).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

import jobtrail
from examples.listing_sync.tables import Accounts
from jobtrail.integrations.ratelimit import LimitedTransport, Limiter, RetryPolicy
from jobtrail.web import create_app

UPSTREAM_URL = os.environ.get("LISTING_SYNC_UPSTREAM_URL", "http://127.0.0.1:8001")
INTERVAL = float(os.environ.get("LISTING_SYNC_INTERVAL", "3600"))
limiter = Limiter(
    "insights-api",
    os.environ.get("LISTING_SYNC_RATE", "5/second"),
    burst=int(os.environ.get("LISTING_SYNC_BURST", "10")),
)
backoff = float(os.environ.get("LISTING_SYNC_RETRY_BACKOFF", "0.5"))
retries = RetryPolicy(max_attempts=4, backoff=backoff)

tracker = jobtrail.Tracker()
store = Accounts(tracker.settings.database_url)


def upstream(api_key: str, ctx: jobtrail.Context | None = None) -> httpx.Client:
    """A client of the insights API: rate limited, retrying 429s and 5xx (as job events)."""
    return httpx.Client(
        base_url=UPSTREAM_URL,
        headers={"Authorization": f"Bearer {api_key}"},
        transport=LimitedTransport(limiter, retries, ctx=ctx),
        timeout=10,
    )


# -- jobs ------------------------------------------------------------------------------------


@tracker.job("listing_sync", timeout=600)
def listing_sync(ctx: jobtrail.Context, account_id: str) -> dict[str, int]:
    """Sync every listing of one account; a failing listing is recorded and the rest go on."""
    account = store.get(account_id)
    if account is None:
        raise LookupError(f"account {account_id!r} no longer exists")
    with upstream(account["api_key"], ctx) as client:
        listings = client.get("/listings").raise_for_status().json()["listings"]
        ctx.progress(listing_names={listing["id"]: listing["name"] for listing in listings})
        for listing in ctx.items(listings, key=lambda listing: listing["id"]):
            with ctx.item(listing["id"]):  # checks for cancel/shutdown first: a listing boundary
                insights = client.get(f"/listings/{listing['id']}/insights").raise_for_status()
                store.save_listing(account_id, listing, insights.json()["daily"])
    return {"listings": len(listings)}


@tracker.job("sync_accounts")
def sync_accounts(ctx: jobtrail.Context, job_type: str) -> dict[str, int]:
    """Queue a sync of every active account (at startup: of those never synced)."""
    account_ids = store.active_ids(never_synced=job_type == "startup")
    for account_id in account_ids:
        key = f"{ctx.job_id}:{account_id}"  # a retry of this job queues no second sync
        listing_sync.submit(account_id=account_id, owner=account_id, trigger=job_type, key=key)
    return {"accounts": len(account_ids)}


tracker.schedule("sync-all", "sync_accounts", every=INTERVAL, payload={"job_type": "scheduled"})
tracker.on_startup("sync_accounts", {"job_type": "startup"})

# On-call hears of a failed sync (some listings failing too) and of a scheduled sync that never
# ran, by e-mail: e.g. mailtos://user:pass@smtp.example.com?to=oncall@example.com.
ONCALL = os.environ.get("LISTING_SYNC_ONCALL")
if ONCALL:
    tracker.alert(
        "sync-failed", "failed", kind="listing_sync", include_partial=True, channels=[ONCALL]
    )
    tracker.alert("sync-never-ran", "schedule_missed", schedule="sync-all", channels=[ONCALL])


# -- the service's API -------------------------------------------------------------------------

STATUSES = {"queued": "pending", "waiting": "pending", "cancelled": "failed"}


def sync_job(job: jobtrail.Job) -> dict[str, Any]:
    """A jobtrail job in this service's words."""
    names = (job.progress_data or {}).get("listing_names", {})
    listing_errors = [
        {"listing_id": i.item_id, "listing_name": names.get(i.item_id)}
        | {"error": i.message, "error_type": i.error_type}
        for i in tracker.failed_items(job.id)
    ]
    return {
        "job_id": job.id,
        "account_id": job.owner,
        "job_type": job.trigger,
        "status": STATUSES.get(job.status, job.status.value),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "total_listings": job.items_total,
        "succeeded_listings": job.items_succeeded or 0,
        "failed_listings": job.items_failed or 0,
        "error_message": job.error_message,
        "error_details": {"listing_errors": listing_errors},
    }


PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


class Credentials(BaseModel):
    api_key: str = Field(min_length=1, max_length=200, pattern=r"^[!-~]+$")  # visible ASCII


class NewAccount(BaseModel):
    account_id: str = Field(min_length=1, max_length=100, pattern=r"^[\w.-]+$")
    name: str = Field(min_length=1, max_length=200, pattern=PRINTABLE)
    credentials: Credentials
    skip_validation: bool = False


def validate(api_key: str) -> dict[str, Any]:
    """List the account's listings upstream: a 400 unless the credentials are accepted."""
    try:
        with upstream(api_key) as client:
            response = client.get("/listings")
    except httpx.HTTPError as exc:
        raise HTTPException(502, f"The insights API cannot be reached: {exc}") from exc
    if response.status_code in (401, 403):
        raise HTTPException(400, f"Invalid account credentials: {response.json()['detail']}")
    if response.is_error:
        raise HTTPException(502, f"The insights API answered {response.status_code}")
    listings = response.json()["listings"]
    return {"valid": True, "listing_count": len(listings), "listings": listings[:5]}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    with tracker.worker():  # the jobs run in this process; SIGTERM drains at a listing boundary
        yield


app = FastAPI(title="Listing sync", lifespan=lifespan)
app.mount("/jobtrail", create_app(tracker, no_auth=True))  # loopback demo: no tokens


def shown(account: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in account.items() if k != "api_key"}


@app.post("/api/v1/accounts", status_code=201)
def create_account(new: NewAccount) -> dict[str, Any]:
    validation = None if new.skip_validation else validate(new.credentials.api_key)
    account = store.add(new.account_id, new.name, new.credentials.api_key)
    if account is None:
        raise HTTPException(409, f"Account {new.account_id!r} already exists")
    return shown(account) | {"validation": validation}


@app.get("/api/v1/accounts/{account_id}")
def get_account(account_id: str) -> dict[str, Any]:
    account = store.get(account_id)
    if account is None:
        raise HTTPException(404, f"Account {account_id!r} not found")
    return shown(account)


@app.post("/api/v1/accounts/{account_id}/sync", status_code=202)
def start_sync(account_id: str) -> dict[str, str]:
    get_account(account_id)
    job = listing_sync.submit(account_id=account_id, owner=account_id, trigger="manual")
    status_url = f"/api/v1/sync-jobs/{job.id}"
    return {"message": "Sync initiated", "job_id": job.id, "status_url": status_url}


@app.get("/api/v1/sync-jobs/{job_id}")
def get_sync_job(job_id: str) -> dict[str, Any]:
    try:
        job = tracker.get(job_id)
    except jobtrail.JobNotFound:
        job = None
    if job is None or job.kind != "listing_sync":
        raise HTTPException(404, f"Sync job {job_id!r} not found")
    return sync_job(job)


@app.get("/api/v1/accounts/{account_id}/sync-jobs")
def list_sync_jobs(
    account_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> dict[str, Any]:
    get_account(account_id)
    page = tracker.list(owner=account_id, kind="listing_sync", limit=limit, offset=offset)
    jobs = [sync_job(job) for job in page.jobs]
    return {"jobs": jobs, "total_count": page.total_count, "limit": limit, "offset": offset}
