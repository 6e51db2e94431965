"""Demo data for ``make example-listing_sync``: two accounts and a first manual sync."""

from __future__ import annotations

import sys

import httpx


def main(url: str) -> None:
    # Connection retries with back-off: the app may still be starting.
    with httpx.Client(base_url=url, transport=httpx.HTTPTransport(retries=8), timeout=30) as api:
        for account_id, api_key in (("demo-host", "valid-demo"), ("empty-host", "valid-empty")):
            body = {
                "account_id": account_id,
                "name": account_id,
                "credentials": {"api_key": api_key},
            }
            print(api.post("/api/v1/accounts", json=body).json())
        sync = api.post("/api/v1/accounts/demo-host/sync").json()
    print(f"\nSync started: {url}{sync['status_url']}")
    print(f"Dashboard:    {url}/jobtrail/\nPress Ctrl-C to stop.")


if __name__ == "__main__":
    main(sys.argv[1])
