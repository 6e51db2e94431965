"""The dashboard mounted under a prefix of another app: every link, form, redirect, stylesheet
and stream address carries the prefix (the mount's ``root_path``)."""

from __future__ import annotations

import re

from fastapi import FastAPI

from jobtrail import Tracker
from jobtrail.web import create_app
from tests.web.client import TESTCLIENT_WARNING, open_client

pytestmark = TESTCLIENT_WARNING

PREFIX = "/jobtrail"
PAGES = ["/", "/jobs", "/stats", "/schedules", "/workers"]


def addresses(html: str) -> list[str]:
    """Every address a page names: links, forms, assets, its event stream and live panels."""
    return re.findall(r'(?<![\w-])(?:href|action|src|data-stream|data-live)="([^"#]+)"', html)


def test_a_dashboard_mounted_under_a_prefix_keeps_every_address_under_it(
    tracker: Tracker,
) -> None:
    token = tracker.ops.create_token("mounted", None)
    with tracker.track("mounted") as ctx:
        job_id = ctx.job_id
    host = FastAPI()
    host.mount(PREFIX, create_app(tracker, run_worker=False))
    client = open_client(host)

    to_login = client.get(f"{PREFIX}/", follow_redirects=False)
    assert (to_login.status_code, to_login.headers["location"]) == (303, f"{PREFIX}/login")
    form = client.get(f"{PREFIX}/login").text
    assert sorted(addresses(form)) == [f"{PREFIX}/login", f"{PREFIX}/static/app.css"]
    signed_in = client.post(
        f"{PREFIX}/login",
        data={"token": token},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, f"{PREFIX}/")

    for page in [*PAGES, f"/jobs/{job_id}"]:
        response = client.get(PREFIX + page)
        assert response.status_code == 200, page
        found = addresses(response.text)
        assert f"{PREFIX}/static/app.js" in found
        assert [a for a in found if not a.startswith(f"{PREFIX}/")] == [], page
        assert f'<html lang="en" data-root="{PREFIX}">' in response.text  # for app.js
        assert 'aria-current="page"' in response.text, page
    assert f'href="{PREFIX}/jobs/{job_id}"' in client.get(f"{PREFIX}/jobs").text
    assert client.get(f"{PREFIX}/static/app.css").status_code == 200
    missing = client.get(f"{PREFIX}/jobs/no-such-job")
    assert missing.status_code == 404
    assert f'href="{PREFIX}/jobs"' in missing.text


def test_a_dashboard_at_the_root_keeps_its_addresses_unprefixed(tracker: Tracker) -> None:
    client = open_client(create_app(tracker, run_worker=False))
    form = client.get("/login").text
    assert sorted(addresses(form)) == ["/login", "/static/app.css"]
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
