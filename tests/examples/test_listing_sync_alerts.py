"""The listing sync example tells on-call: a sync with failing listings reaches a real receiver
(``LISTING_SYNC_ONCALL``, apprise ``json://``) as an alert linking to the job."""

from __future__ import annotations

from pathlib import Path

from tests.examples.processes import Fleet
from tests.examples.test_listing_sync import APP, FAILING, QUICK, UPSTREAM, create, start_sync
from tests.receivers import json_receiver


def test_a_sync_with_failing_listings_alerts_on_call(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, f"sqlite:///{tmp_path / 'listing.db'}")
    with json_receiver() as oncall:
        try:
            upstream = fleet.serve(UPSTREAM, "upstream")
            env = QUICK | {
                "LISTING_SYNC_UPSTREAM_URL": upstream.url,
                "LISTING_SYNC_ONCALL": oncall.url(),
                "JOBTRAIL_ALERT_INTERVAL": "0.2",
                "JOBTRAIL_PUBLIC_URL": "http://127.0.0.1/jobtrail",
            }
            app = fleet.serve(APP, "app", **env)
            with app.client() as client:
                assert create(client, "acct-1", "valid-acct-1").status_code == 201
                job_id = start_sync(client, "acct-1")
            [message] = oncall.received.wait_for(1, timeout=30)
        finally:
            fleet.stop_all()
    assert message["title"] == "[jobtrail] sync-failed firing: kind=listing_sync"
    assert "listing_sync job partial (owner acct-1)" in message["message"]
    assert f"{len(FAILING)} items failed" in message["message"]
    assert f"http://127.0.0.1/jobtrail/jobs/{job_id}" in message["message"]
