"""Demo data for ``make example-media_sync``: one run started on demand."""

from __future__ import annotations

import sys

import httpx


def main(url: str) -> None:
    # Connection retries with back-off: the app may still be starting.
    with httpx.Client(base_url=url, transport=httpx.HTTPTransport(retries=8), timeout=30) as api:
        run = api.post("/api/v1/jobs/media-sync").json()
    print(f"Run started:  {url}{run['page_url']} (the polling page)")
    print(f"Progress:     {url}{run['status_url']}")
    print(f"Dashboard:    {url}/jobtrail/\nPress Ctrl-C to stop.")


if __name__ == "__main__":
    main(sys.argv[1])
