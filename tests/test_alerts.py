"""Alerts end to end: a failing job reaches a real SMTP server and a real JSON receiver, grouped
while it keeps failing and resolved by a success; each condition fires and resolves; bad rules
are refused; a channel's secret appears nowhere."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from jobtrail import AlertRule, Context, Status, Tracker
from jobtrail.alerting import Alerting
from jobtrail.exceptions import InvalidData
from jobtrail.notifier import Notifier
from tests.receivers import (
    JSON_PASSWORD,
    SMTP_PASSWORD,
    JsonReceiver,
    MailReceiver,
    json_receiver,
    mail_receiver,
)


@pytest.fixture
def mail() -> Iterator[MailReceiver]:
    with mail_receiver() as receiver:
        yield receiver


@pytest.fixture
def hook() -> Iterator[JsonReceiver]:
    with json_receiver() as receiver:
        yield receiver


@pytest.fixture
def fast(database_url: str) -> Iterator[Tracker]:
    """A tracker evaluating its alert rules every 50 ms, its links to jobs.example.com."""
    with Tracker(
        database_url,
        flush_interval=0.05,
        alert_interval=0.05,
        public_url="https://jobs.example.com",
    ) as tracker:
        yield tracker


def test_a_failing_kind_alerts_by_email_and_json_groups_repeats_and_resolves(
    fast: Tracker, mail: MailReceiver, hook: JsonReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outcome = {"fail": True}

    @fast.job("listing_sync")
    def listing_sync(ctx: Context) -> None:
        if outcome["fail"]:
            raise RuntimeError("upstream said 503 for account A1")

    fast.alert(
        "sync-failures",
        "failed",
        kind="listing_sync",
        channels=[mail.url(), hook.url()],
        group_window=2.0,
    )
    with fast.worker(2, heartbeat_interval=0.2):
        first = listing_sync.submit(owner="A1")
        fast.wait(first.id, timeout=5)
        failed_at = time.monotonic()
        [email] = mail.received.wait_for(1)
        [posted] = hook.received.wait_for(1)
        assert hook.received.arrived[0] - failed_at < 2.0
        assert "sync-failures firing: kind=listing_sync" in email["subject"]
        assert "upstream said 503 for account A1" in email["body"]
        assert f"https://jobs.example.com/jobs/{first.id}" in posted["message"]
        assert "owner A1" in posted["message"]

        # Two more failures within the group window: counted, told once, together.
        for _ in range(2):
            fast.wait(listing_sync.submit(owner="A1").id, timeout=5)
        assert len(hook.received.items) == 1
        [_, update] = hook.received.wait_for(2, timeout=5)
        assert "still firing" in update["title"]
        assert update["message"].startswith("3 in all")

        outcome["fail"] = False
        fast.wait(listing_sync.submit(owner="A1").id, timeout=5)
        [*_, resolved] = hook.received.wait_for(3)
        assert "resolved" in resolved["title"]
        mail.received.wait_for(3)

    [alert] = fast.alerts.page().alerts
    assert (alert.status, alert.count, alert.scope_key) == ("resolved", 3, "kind=listing_sync")
    assert alert.job_ids[0] == first.id
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])
    assert SMTP_PASSWORD not in logged
    assert JSON_PASSWORD not in logged


@pytest.fixture
def alerting(tracker: Tracker) -> Iterator[Alerting]:
    evaluator = Alerting.of(tracker.runtime, "test")
    yield evaluator
    evaluator.stop()


def turn(alerting: Alerting) -> None:
    """One evaluation, its notifications sent before returning."""
    alerting.evaluate()
    alerting.notifier.send_due()


def titles(receiver: JsonReceiver, count: int) -> list[str]:
    return [m["title"] for m in receiver.received.wait_for(count)]


def test_a_failure_rate_over_its_threshold_fires_and_resolves_when_back_under(
    tracker: Tracker, alerting: Alerting, hook: JsonReceiver
) -> None:
    tracker.alert(
        "rate", "failure_rate", channels=[hook.url()], window=3600, threshold=0.2, min_count=5
    )
    finish(tracker, "listing_sync", succeeded=3, failed=2)
    turn(alerting)
    [message] = hook.received.wait_for(1)
    assert "rate firing: kind=listing_sync" in message["title"]
    assert "more than 20% of listing_sync failed in the last hour: 2 of 5" in message["message"]
    [alert] = tracker.alerts.page().alerts
    assert len(alert.job_ids) == 2  # the failed ones, to follow from the alert
    assert {tracker.get(j).status for j in alert.job_ids} == {Status.FAILED}
    finish(tracker, "listing_sync", succeeded=6, failed=0)
    turn(alerting)
    assert "rate resolved" in titles(hook, 2)[1]


def test_a_failure_rate_below_the_minimum_count_does_not_fire(
    tracker: Tracker, alerting: Alerting, hook: JsonReceiver
) -> None:
    tracker.alert("rate", "failure_rate", channels=[hook.url()], min_count=5)
    finish(tracker, "listing_sync", succeeded=0, failed=4)
    turn(alerting)
    assert tracker.alerts.page().alerts == []
    finish(tracker, "listing_sync", succeeded=0, failed=1)
    turn(alerting)
    assert [a.count for a in tracker.alerts.page().alerts] == [5]


def finish(tracker: Tracker, kind: str, *, succeeded: int, failed: int) -> None:
    """Record finished jobs of ``kind`` tracked in place."""
    for _ in range(succeeded):
        with tracker.track(kind):
            pass
    for _ in range(failed):
        with pytest.raises(ValueError, match="boom"), tracker.track(kind):
            raise ValueError("boom")


def test_bad_rules_are_refused_with_the_reason_and_without_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"json://hook:{JSON_PASSWORD}@127.0.0.1:9/x"
    cases = [
        (("r", "failed"), {"channels": [f"slack://{JSON_PASSWORD}"]}, "slack://…"),
        (("r", "failed"), {"channels": [f"bogus://{JSON_PASSWORD}"]}, "bogus://…"),
        (("r", "no_such_condition"), {"channels": [url]}, "unknown condition"),
        (("r", "failed"), {"channels": []}, "1 to 10 channel"),
        (("r", "failed"), {"channels": ["bogus://thing"]}, "bogus://"),
        (("r", "failed"), {"channels": ["not a url"]}, "a channel is a URL"),
        (("r", "failure_rate"), {"channels": [url], "threshold": 1.5}, "threshold"),
        (("r", "failure_rate"), {"channels": [url], "min_count": "7"}, "min_count"),
        (("r", "failed"), {"channels": [url], "window": 3}, "no parameter 'window'"),
        (("bad name!", "failed"), {"channels": [url]}, "name"),
    ]
    for args, options, reason in cases:
        with pytest.raises(InvalidData, match=reason) as refused:
            AlertRule.of(*args, **options)  # type: ignore[arg-type]
        assert JSON_PASSWORD not in str(refused.value)
    assert "Unparseable URL" in caplog.text  # apprise spoke, and without the secret
    assert JSON_PASSWORD not in caplog.text + repr([r.args for r in caplog.records])


def test_a_job_past_its_limit_fires_stalled_and_its_lost_worker_fires_worker_lost(
    tracker: Tracker, alerting: Alerting, hook: JsonReceiver
) -> None:
    @tracker.job("slow", timeout=0.2, max_attempts=2)
    def slow(ctx: Context) -> None: ...

    tracker.alert("stuck", "stalled", channels=[hook.url()])
    tracker.alert("lost", "worker_lost", channels=[hook.url()], group_window=0.0)
    turn(alerting)  # worker_lost reads rescues from here on
    job = slow.submit()
    [claimed] = tracker.store.runs.claim("gone-host:41:t0", "lease-1", 1, ["slow"])
    assert claimed.job.id == job.id
    time.sleep(0.3)
    turn(alerting)
    [stuck] = hook.received.wait_for(1)
    assert "stuck firing: kind=slow" in stuck["title"]
    assert "runs past its 0.2 s limit" in stuck["message"]

    lose_heartbeat(tracker, job.id)
    assert [j.id for j in tracker.store.expiry.rescue(1.0)] == [job.id]
    turn(alerting)
    found = titles(hook, 3)
    assert "[jobtrail] lost firing: worker=gone-host:41" in found
    assert "[jobtrail] stuck resolved: kind=slow" in found
    turn(alerting)  # no rescue since, and a group window of 0: cleared
    assert "[jobtrail] lost resolved: worker=gone-host:41" in titles(hook, 4)
    [lost] = tracker.alerts.page(rule="lost").alerts
    assert (lost.count, lost.job_ids, lost.status) == (1, [job.id], "resolved")


def lose_heartbeat(tracker: Tracker, job_id: str) -> None:
    from datetime import UTC, datetime

    from jobtrail.store.tables import jobs

    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    with tracker.store.database.engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(heartbeat_at=long_ago))


def test_queued_jobs_too_old_fire_queue_age_then_waiting_for_no_worker_fires_unconsumed(
    tracker: Tracker, alerting: Alerting, hook: JsonReceiver
) -> None:
    from datetime import UTC, datetime

    from jobtrail import WorkerInfo

    @tracker.job("render", queue="gpu")
    def render(ctx: Context) -> None: ...

    tracker.alert("old", "queue_age", channels=[hook.url()], older_than=0)
    tracker.alert("nobody", "queue_unconsumed", channels=[hook.url()], older_than=0)
    job = render.submit()
    time.sleep(0.01)
    turn(alerting)
    [old] = hook.received.wait_for(1)
    assert "old firing: queue=gpu" in old["title"]
    assert "1 jobs queued on 'gpu'" in old["message"]
    turn(alerting)  # still so: the same alert, the same job, no new message
    [alert] = tracker.alerts.page(rule="old").alerts
    assert (alert.status, alert.count, alert.job_ids) == ("firing", 1, [job.id])

    now = datetime.now(UTC)
    cpu = WorkerInfo("cpu-1", "jobtrail", "h", 1, ["default"], ["other"], 1, 0, now, now)
    tracker.ops.announce_worker(cpu)
    assert tracker.ops.watch_queues().parked == 1
    turn(alerting)
    found = titles(hook, 3)
    assert "[jobtrail] old resolved: queue=gpu" in found
    assert "[jobtrail] nobody firing: queue=gpu" in found
    assert "which no live worker consumes" in hook.received.items[-1]["message"] + "".join(
        m["message"] for m in hook.received.items
    )
    tracker.cancel(job.id)
    turn(alerting)
    assert "[jobtrail] nobody resolved: queue=gpu" in titles(hook, 4)


def test_a_schedule_slot_that_never_started_fires_until_its_job_starts(
    database_url: str, hook: JsonReceiver
) -> None:
    from jobtrail.scheduler import Scheduler
    from jobtrail.store.tables import jobs
    from tests.clock import FakeClock

    clock = FakeClock()
    with Tracker(database_url, clock=clock) as tracker:

        @tracker.job("nightly")
        def nightly(ctx: Context) -> None: ...

        tracker.schedule("every-minute", "nightly", every=60)
        tracker.alert("missed", "schedule_missed", channels=[hook.url()], grace=30)
        scheduler = Scheduler.of(tracker.runtime, "test")
        scheduler.register()
        alerting = Alerting.of(tracker.runtime, "test")
        try:
            clock.advance(89)
            turn(alerting)
            assert tracker.alerts.page().alerts == []  # the slot at +60 s is in its grace
            clock.advance(2)
            turn(alerting)
            [missed] = hook.received.wait_for(1)
            assert "missed firing: schedule=every-minute" in missed["title"]
            assert "never ticked" in missed["message"]

            [run] = scheduler.tick()
            turn(alerting)
            [alert] = tracker.alerts.page().alerts
            assert alert.status == "firing"
            assert "has a job that did not start" in alert.summary
            with tracker.store.database.engine.begin() as conn:
                started = jobs.update().where(jobs.c.id == run.job_id).values(started_at=clock())
                conn.execute(started)
            turn(alerting)
            assert "[jobtrail] missed resolved: schedule=every-minute" in titles(hook, 2)
        finally:
            alerting.stop()


def test_a_channel_that_fails_is_retried_with_backoff_and_its_secret_kept_out_of_the_error(
    database_url: str, hook: JsonReceiver
) -> None:
    from tests.clock import FakeClock

    clock = FakeClock()
    with Tracker(database_url, clock=clock) as tracker:
        tracker.alert("f", "failed", channels=[hook.url()])
        alerting = Alerting.of(tracker.runtime, "test")
        try:
            hook.failing = True
            finish(tracker, "sync", succeeded=0, failed=1)
            alerting.evaluate()
            alerting.stop()  # this test sends by hand, with a notifier of its own
            notifier = Notifier(tracker.store.alerts, tracker.store.database.outage)
            assert notifier.send_due() == 0
            [alert] = tracker.alerts.page().alerts
            [note] = tracker.store.alerts.notifications(alert.id)
            assert (note["status"], note["attempts"]) == ("pending", 1)
            assert note["channel"] == f"json://127.0.0.1:{hook.port}"
            assert "500" in note["error"]
            assert JSON_PASSWORD not in note["error"]
            hook.failing = False
            assert notifier.send_due() == 0  # not due before its backoff
            clock.advance(2)
            assert notifier.send_due() == 1
            hook.received.wait_for(1)
            [note] = tracker.store.alerts.notifications(alert.id)
            assert (note["status"], note["attempts"]) == ("sent", 2)
        finally:
            alerting.stop()


def test_a_webhook_disabled_after_failing_fires_until_it_is_enabled_again(
    tracker: Tracker, alerting: Alerting, hook: JsonReceiver
) -> None:
    tracker.alert("webhooks", "webhook_disabled", channels=[hook.url()])
    subscription, _ = tracker.webhooks.subscribe(
        f"http://127.0.0.1:{hook.port}/partner", owner="A1", allow_private=True
    )
    turn(alerting)
    assert tracker.alerts.page().alerts == []
    tracker.store.webhooks.disable(subscription.id, "answered 500 for 24 hours")
    turn(alerting)
    [fired] = hook.received.wait_for(1)
    assert f"webhooks firing: webhook={subscription.id}" in fired["title"]
    assert "127.0.0.1 was disabled: answered 500 for 24 hours" in fired["message"]
    tracker.webhooks.update(subscription.id, {"enabled": True})
    turn(alerting)
    assert f"[jobtrail] webhooks resolved: webhook={subscription.id}" in titles(hook, 2)


def test_one_process_evaluates_at_a_time_and_another_takes_over_when_its_lease_lapses(
    database_url: str, hook: JsonReceiver
) -> None:
    from tests.clock import FakeClock

    clock = FakeClock()
    with Tracker(database_url, clock=clock) as tracker:
        tracker.alert("f", "failed", channels=[hook.url()])
        first, second = (Alerting.of(tracker.runtime, name) for name in ("one", "two"))
        try:
            finish(tracker, "sync", succeeded=0, failed=1)
            assert first.evaluate() == 1
            assert second.evaluate() == 0  # "one" holds the lease
            finish(tracker, "other", succeeded=0, failed=1)
            clock.advance(11)  # past the lease (10 s): "one" went silent
            assert second.evaluate() == 1
            assert first.evaluate() == 0
            assert {a.scope_key for a in tracker.alerts.page().alerts} == {
                "kind=sync",
                "kind=other",
            }
        finally:
            first.stop()
            second.stop()


def test_resolved_alerts_and_their_notifications_are_purged_after_the_retention(
    database_url: str, hook: JsonReceiver
) -> None:
    from datetime import timedelta

    from tests.clock import FakeClock

    clock = FakeClock()
    with Tracker(database_url, clock=clock) as tracker:
        tracker.alert("f", "failed", channels=[hook.url()])
        alerting = Alerting.of(tracker.runtime, "test")
        try:
            finish(tracker, "sync", succeeded=0, failed=1)
            turn(alerting)
            clock.advance(1)
            finish(tracker, "sync", succeeded=1, failed=0)
            turn(alerting)
            [alert] = tracker.alerts.page(status="resolved").alerts
            assert len(tracker.store.alerts.notifications(alert.id)) == 2
            clock.advance(86400)
            assert tracker.store.alerts.purge(timedelta(days=2)) == 0
            clock.advance(86400 * 2)
            assert tracker.store.alerts.purge(timedelta(days=2)) == 1
            assert tracker.alerts.page().alerts == []
            assert tracker.store.alerts.notifications(alert.id) == []
        finally:
            alerting.stop()


def test_a_failure_committed_after_a_later_one_was_read_is_counted_once(
    database_url: str, hook: JsonReceiver
) -> None:
    """PostgreSQL commits out of order: a job finished earlier may become visible after one
    finished later was read. The next reading starts back by an overlap and skips ids seen."""
    from tests.clock import FakeClock

    clock = FakeClock()
    with Tracker(database_url, clock=clock) as tracker:
        tracker.alert("f", "failed", channels=[hook.url()], group_window=0)
        alerting = Alerting.of(tracker.runtime, "test")
        try:
            clock.advance(5)
            finish(tracker, "sync", succeeded=0, failed=1)
            turn(alerting)
            clock.advance(-3)  # a failure at +2 s, visible only now
            finish(tracker, "sync", succeeded=0, failed=1)
            clock.advance(4)
            turn(alerting)
            turn(alerting)
            [alert] = tracker.alerts.page().alerts
            assert (alert.count, len(alert.job_ids)) == (2, 2)
            [_, update] = hook.received.wait_for(2)
            assert update["message"].startswith("2 in all")
        finally:
            alerting.stop()


def test_a_state_that_grows_while_firing_is_told_once_per_group_window(
    database_url: str, hook: JsonReceiver
) -> None:
    from tests.clock import FakeClock

    clock = FakeClock()
    with Tracker(database_url, clock=clock) as tracker:

        @tracker.job("render", queue="gpu")
        def render(ctx: Context) -> None: ...

        tracker.alert("old", "queue_age", channels=[hook.url()], older_than=60, group_window=300)
        alerting = Alerting.of(tracker.runtime, "test")
        try:
            first = render.submit()
            clock.advance(61)
            turn(alerting)
            assert "1 jobs queued on 'gpu'" in hook.received.wait_for(1)[0]["message"]
            second = render.submit()
            clock.advance(61)
            turn(alerting)
            [alert] = tracker.alerts.page().alerts
            assert (alert.count, alert.notified_count) == (2, 1)  # counted, not told yet
            clock.advance(300)
            turn(alerting)
            [_, update] = hook.received.wait_for(2)
            assert update["title"] == "[jobtrail] old still firing: queue=gpu"
            assert "2 jobs queued on 'gpu'" in update["message"]
            turn(alerting)
            assert len(hook.received.items) == 2
            tracker.cancel(first.id)
            tracker.cancel(second.id)
            turn(alerting)
            assert hook.received.wait_for(3)[2]["title"] == "[jobtrail] old resolved: queue=gpu"
        finally:
            alerting.stop()


def test_a_rule_saved_again_keeps_its_reading_and_one_given_a_new_condition_starts_afresh(
    database_url: str, hook: JsonReceiver
) -> None:
    from tests.clock import FakeClock

    clock = FakeClock()
    with Tracker(database_url, clock=clock) as tracker:
        rule = tracker.alert("r", "failed", channels=[hook.url()])
        alerting = Alerting.of(tracker.runtime, "test")
        try:
            finish(tracker, "sync", succeeded=0, failed=1)
            turn(alerting)
            clock.advance(1)
            tracker.store.alerts.save_rule(rule, "code")  # a worker starting again
            turn(alerting)
            assert [a.count for a in tracker.alerts.page().alerts] == [1]  # nothing read twice
            rate = AlertRule.of("r", "failure_rate", channels=[hook.url()], min_count=1)
            tracker.alerts.save(rate)
            [stored] = tracker.store.alerts.rules()
            assert stored.cursor is None
        finally:
            alerting.stop()


def test_a_notification_whose_sender_died_mid_send_is_sent_once_its_claim_lapses(
    database_url: str, hook: JsonReceiver
) -> None:
    from tests.clock import FakeClock

    clock = FakeClock()
    with Tracker(database_url, clock=clock) as tracker:
        tracker.alert("f", "failed", channels=[hook.url()])
        alerting = Alerting.of(tracker.runtime, "test")
        alerting.notifier.stop()  # nothing sends but this test
        try:
            finish(tracker, "sync", succeeded=0, failed=1)
            alerting.evaluate()
            [due] = tracker.store.alerts.due()
            assert tracker.store.alerts.claim(due.id, 60)  # a sender took it, then died
            notifier = Notifier(tracker.store.alerts, tracker.store.database.outage)
            assert notifier.send_due() == 0
            clock.advance(61)
            assert notifier.send_due() == 1
            assert hook.received.wait_for(1)[0]["title"] == "[jobtrail] f firing: kind=sync"
        finally:
            alerting.stop()


def test_the_evaluations_reads_of_failures_and_rescues_use_their_indexes(tracker: Tracker) -> None:
    """On a store with a history (a year of failures, analysed), the reads of the last
    seconds go by completion time and by the partial index of rescues, not by status or
    kind (which would read every such job ever kept)."""
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from jobtrail.store.alert_reads import finished_query, rescued_query
    from jobtrail.store.tables import jobs
    from tests.test_store import assert_uses_index

    @tracker.job("sync")
    def sync(ctx: Context) -> None: ...

    tracker.submit_many("sync", [{}] * 2000)
    long_ago = datetime(2025, 1, 1, tzinfo=UTC)
    with tracker.store.database.engine.begin() as conn:
        conn.execute(jobs.update().values(status="failed", completed_at=long_ago))
        conn.execute(sa.text("ANALYZE"))
    rule = AlertRule.of("r", "failed", kind="sync", channels=["json://127.0.0.1:9/x"])
    since = datetime(2026, 1, 1, tzinfo=UTC)
    failures = finished_query(rule, since, {Status.FAILED}, skip=["a", "b"])
    assert_uses_index(tracker.store, failures, "ix_jobs_completed_at")
    rescues = rescued_query(rule, 100, skip=[101])
    assert_uses_index(tracker.store, rescues, "ix_job_events_rescued_id")
