"""The dashboard's Alerts page in a real browser, served by ``jobtrail serve``: an alert raised
by the server's own evaluation is listed with a link to its job, and the page passes axe."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_dashboard import (
    AXE,
    Served,
    _serious_violations,
    _serve,
    _sign_in,
    _submit,
    browser,
)
from tests.servers import require

__all__ = ["browser"]  # the module's fixture, shared


@pytest.fixture(scope="module")
def alerting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with _serve(tmp_path_factory.mktemp("alerts")) as running:
        yield running


def test_the_alerts_page_lists_a_firing_alert_linked_to_its_job_and_passes_axe(
    browser: Browser, alerting_server: Served
) -> None:
    require("axe-core (make test vendors it)", str(AXE) if AXE.exists() else None)
    served = alerting_server
    rule = {
        "name": "sync-failures",
        "condition": "failed",
        "channels": ["json://127.0.0.1:9/nobody-listens"],
        "params": {"include_partial": True},
    }
    headers = {"Authorization": f"Bearer {served.token}"}
    made = httpx.post(f"{served.base}/api/v1/alert-rules", json=rule, headers=headers)
    assert made.status_code == 201, made.text
    job = _submit(served, "listing_sync", {"bad": ["L1"]})
    page = _sign_in(browser, served, served.token, bypass_csp=True)
    try:
        page.goto(f"{served.base}/alerts")
        expect(page.locator("h1")).to_have_text("Alerts")
        firing = page.locator(f'a[href="/jobs/{job}"]').first
        for _ in range(20):  # the server evaluates every second
            if firing.count():
                break
            page.wait_for_timeout(250)
            page.reload()
        expect(firing).to_be_visible()
        expect(page.locator("table.rules")).to_contain_text("json://127.0.0.1")
        assert _serious_violations(page) == []
    finally:
        page.context.close()
