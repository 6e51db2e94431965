"""``jobtrail alerts`` and ``jobtrail alerts rules`` on a store: what fired and the rules, the
channels' secrets never printed."""

from __future__ import annotations

import pytest

from jobtrail import Tracker
from jobtrail.alerting import Alerting
from tests.e2e.test_cli import jobtrail, json_of, server

__all__ = ["server"]  # the fixture, shared

SECRET = "xoxb-T0KEN-s3cret"


def test_the_alerts_and_rules_of_a_store_are_listed_without_their_secrets(
    database_url: str,
) -> None:
    with Tracker(database_url) as tracker:
        tracker.alert("sync-failures", "failed", channels=[f"slack://{SECRET}/B1/C1"])
        alerting = Alerting.of(tracker.runtime, "test")
        try:
            with pytest.raises(RuntimeError), tracker.track("listing_sync"):
                raise RuntimeError("upstream down")
            alerting.evaluate()
        finally:
            alerting.stop()

    [alert] = json_of(database_url, "alerts")
    assert (alert["rule"], alert["status"], alert["scope_key"]) == (
        "sync-failures",
        "firing",
        "kind=listing_sync",
    )
    for args in (("alerts",), ("alerts", "rules")):
        done = jobtrail(database_url, *args)
        assert done.returncode == 0, done.stderr
        assert "sync-failures" in done.stdout
        assert SECRET not in done.stdout + done.stderr
    assert "slack://…" in done.stdout


def test_rules_are_added_and_removed_from_the_command_line_and_bad_ones_refused(
    database_url: str,
) -> None:
    Tracker(database_url).open().close()  # the commands use a store, they make none
    channel = f"slack://{SECRET}/B1/C1"
    added = jobtrail(
        database_url,
        *("alerts", "add", "slow-queue", "queue_age", "--channel", channel),
        *("--queue", "gpu", "--param", "older_than=600", "--param", "group_window=60"),
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "alert rule slow-queue: queue_age, to slack://…"
    bad = jobtrail(database_url, "alerts", "add", "x", "queue_age", "--channel", "bogus://no")
    assert bad.returncode == 1
    assert "alert rule refused: channel bogus://… is not a URL apprise" in bad.stderr
    assert "Traceback" not in bad.stderr
    with Tracker(database_url) as tracker:
        [rule] = tracker.alerts.rules()
        assert (rule.name, rule.source, rule.scope["queue"]) == ("slow-queue", "api", "gpu")
        assert (rule.params["older_than"], rule.params["group_window"]) == (600.0, 60.0)
    removed = jobtrail(database_url, "alerts", "rm", "slow-queue")
    assert removed.returncode == 0, removed.stderr
    with Tracker(database_url) as tracker:
        assert tracker.alerts.rules() == []
    assert SECRET not in added.stdout + added.stderr + removed.stdout


def test_rules_and_alerts_through_a_server_need_an_admin_token(
    tracker: Tracker, database_url: str, server: str
) -> None:
    admin = ("--url", server, "--token", tracker.ops.create_token("ops"))
    owner = ("--url", server, "--token", tracker.ops.create_token("alice", "A"))
    channel = f"slack://{SECRET}/B1/C1"
    added = jobtrail(
        database_url, "alerts", "add", "lost", "worker_lost", "--channel", channel, *admin
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "alert rule lost: worker_lost, to slack://…"
    [rule] = json_of(database_url, "alerts", "rules", *admin)
    assert (rule["name"], rule["source"], rule["channels"]) == ("lost", "api", ["slack://…"])
    assert json_of(database_url, "alerts", *admin) == []
    refused = jobtrail(database_url, "alerts", "rules", *owner)
    assert refused.returncode == 1
    assert "alerts and alert rules need an admin token (HTTP 403)" in refused.stderr
    assert "Traceback" not in refused.stderr
    removed = jobtrail(database_url, "alerts", "rm", "lost", *admin)
    assert removed.returncode == 0, removed.stderr
    assert tracker.alerts.rules() == []
