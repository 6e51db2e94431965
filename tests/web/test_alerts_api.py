"""The alert endpoints: rules made, read and deleted by an admin only, bad rules refused with
the reason and nothing stored, channel secrets never shown, and the alert history paged."""

from __future__ import annotations

from typing import Any

import pytest

from jobtrail.alerting import Alerting
from tests.waiting import until
from tests.web.client import API, TESTCLIENT_WARNING, Api

pytestmark = TESTCLIENT_WARNING

SECRET = "xoxb-T0KEN-s3cret"
SLACK = f"slack://{SECRET}/B0000/C0000"
MAIL = "mailto://alerts:Pa55word-s3cret@smtp.example.com?to=oncall@example.com"


def rule(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "sync-failures",
        "condition": "failed",
        "channels": [SLACK, MAIL],
        "kind": "listing_sync",
        "params": {"group_window": 60},
    }
    return body | changes


def test_an_admin_makes_reads_and_deletes_a_rule_whose_channels_show_as_labels(api: Api) -> None:
    made = api.client.post(f"{API}/alert-rules", json=rule(), headers=api.admin)
    assert made.status_code == 201, made.text
    shown = made.json()
    assert shown["channels"] == ["slack://…", "mailto://smtp.example.com"]
    assert shown["source"] == "api"
    assert shown["scope"]["kind"] == "listing_sync"
    assert shown["params"]["group_window"] == 60
    listed = api.client.get(f"{API}/alert-rules", headers=api.admin)
    one = api.client.get(f"{API}/alert-rules/sync-failures", headers=api.admin)
    for response in (made, listed, one):
        assert SECRET not in response.text
        assert "Pa55word" not in response.text
    assert [r["name"] for r in listed.json()] == ["sync-failures"]
    assert one.json() == shown

    gone = api.client.delete(f"{API}/alert-rules/sync-failures", headers=api.admin)
    assert gone.status_code == 204
    again = api.client.delete(f"{API}/alert-rules/sync-failures", headers=api.admin)
    assert again.status_code == 404
    assert "no alert rule named 'sync-failures'" in again.json()["detail"]
    assert api.client.get(f"{API}/alert-rules", headers=api.admin).json() == []


def test_owner_tokens_may_not_see_or_change_alerts(api: Api) -> None:
    calls = [
        ("get", "/alerts", None),
        ("get", "/alert-rules", None),
        ("post", "/alert-rules", rule()),
        ("delete", "/alert-rules/sync-failures", None),
    ]
    for method, path, body in calls:
        response = api.client.request(method, f"{API}{path}", json=body, headers=api.alice)
        assert response.status_code == 403, (path, response.text)
    assert api.tracker.alerts.rules() == []


def test_bad_rules_are_refused_with_the_reason_and_nothing_is_stored(api: Api) -> None:
    cases = [
        (rule(condition="nope"), "Input should be 'failed'"),
        (rule(channels=["bogus://x"]), "bogus://"),
        (rule(channels=[]), "1 to 10 channel URLs"),
        (rule(params={"threshold": 0.5}), "no parameter 'threshold'"),
        (rule(params={"kind": "x"}), "field of the rule"),
        (rule(condition="failure_rate", params={"threshold": 2}), "threshold"),
        (rule(name="has space"), "name"),
        (rule(channels=[f"json://u:{SECRET}@\u0000host"]), "channel"),
        (rule(extra=1), "extra"),
    ]
    for body, reason in cases:
        response = api.client.post(f"{API}/alert-rules", json=body, headers=api.admin)
        assert response.status_code == 422, response.text
        assert reason in response.text
        assert SECRET not in response.text
    assert api.tracker.alerts.rules() == []


def test_the_history_lists_alerts_newest_first_filtered_and_paged(api: Api) -> None:
    tracker = api.tracker
    for kind in ("a", "b", "c"):
        tracker.alert(f"fail-{kind}", "failed", kind=kind, channels=["json://127.0.0.1:9/x"])
    alerting = Alerting.of(tracker.runtime, "test")
    try:
        alerting.register()
        for kind in ("a", "b", "c"):
            with pytest.raises(RuntimeError), tracker.track(kind):
                raise RuntimeError("boom")
        evaluated(alerting, 3)
    finally:
        alerting.stop()
    first = api.client.get(f"{API}/alerts?limit=2", headers=api.admin).json()
    assert [a["rule"] for a in first["alerts"]] == ["fail-c", "fail-b"]
    assert first["alerts"][0]["status"] == "firing"
    assert first["alerts"][0]["count"] == 1
    assert len(first["alerts"][0]["job_ids"]) == 1
    before = first["next_before"]
    rest = api.client.get(f"{API}/alerts?limit=2&before={before}", headers=api.admin).json()
    assert [a["rule"] for a in rest["alerts"]] == ["fail-a"]
    assert rest["next_before"] is None
    only = api.client.get(f"{API}/alerts?rule=fail-b", headers=api.admin).json()
    assert [a["scope_key"] for a in only["alerts"]] == ["kind=b"]
    resolved = api.client.get(f"{API}/alerts?status=resolved", headers=api.admin).json()
    assert resolved["alerts"] == []


def test_the_dashboard_shows_alerts_firing_linked_to_their_jobs_to_admins_only(api: Api) -> None:
    tracker = api.tracker
    tracker.alert("sync-failures", "failed", channels=[SLACK])
    alerting = Alerting.of(tracker.runtime, "test")
    try:
        with pytest.raises(RuntimeError), tracker.track("listing_sync"):
            raise RuntimeError("boom")
        evaluated(alerting, 1)
    finally:
        alerting.stop()
    [job_id] = tracker.alerts.page().alerts[0].job_ids
    page = api.cookie_client(api.admin).get("/alerts")
    assert page.status_code == 200
    assert f'href="/jobs/{job_id}"' in page.text
    assert "kind=listing_sync" in page.text
    assert 'href="/alerts"' in page.text  # the nav link
    assert SECRET not in page.text
    assert "slack://…" in page.text
    other = api.cookie_client(api.admin).get("/alerts?rule=another")
    assert "No alert yet." in other.text  # the recent list of that rule only
    hidden = api.cookie_client(api.alice).get("/alerts")
    assert "shown to admin tokens only" in hidden.text
    assert job_id not in hidden.text


def evaluated(alerting: Alerting, alerts: int) -> None:
    """Evaluate, and wait for ``alerts`` alerts: the app's own maintenance may hold the
    evaluator's lease, and then it writes them (within its alert interval)."""
    alerting.evaluate()
    until(
        lambda: (
            len(alerting.store.alerts.page(rule=None, status=None, before=None, limit=9).alerts)
            == alerts
        ),
        what=f"{alerts} alerts",
    )
