"""Webhooks end to end on both dialects: the outbox trigger, subscriptions and their filters,
owner scoping, and every announced event type delivered to a real receiver that verifies each
request with the Standard Webhooks library."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from jobtrail import Context, Tracker
from jobtrail.courier import Courier
from jobtrail.exceptions import WebhookNotFound, WebhookRefused
from jobtrail.store.tables import webhook_deliveries, webhook_outbox
from jobtrail.webhooks import EVENT_TYPES, DeliveryStatus
from tests.webhook_receiver import FAST, Received, Receiver


@pytest.fixture
def hooks(database_url: str) -> Iterator[Tracker]:
    """A tracker that may send webhooks to loopback, polling and retrying quickly."""
    with Tracker(database_url, **FAST).open() as tracker:
        yield tracker


def subscribe(tracker: Tracker, receiver: Receiver, **filters: object) -> str:
    subscription, secret = tracker.webhooks.subscribe(receiver.url, **filters)  # type: ignore[arg-type]
    receiver.secrets.append(secret)
    return subscription.id


def outbox_count(tracker: Tracker) -> int:
    with tracker.store.database.engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(webhook_outbox)).scalar_one()
        )


def types_of(got: list[Received], job_id: str) -> list[str]:
    return [r.type for r in got if r.job_id == job_id]


def test_without_an_enabled_subscription_the_trigger_writes_no_outbox_row(
    hooks: Tracker, receiver: Receiver
) -> None:
    @hooks.job("noop")
    def noop(ctx: Context) -> None: ...

    noop.submit()
    assert outbox_count(hooks) == 0

    subscription = subscribe(hooks, receiver)
    noop.submit()
    assert outbox_count(hooks) == 1  # the created event, in the submit's own transaction

    hooks.webhooks.update(subscription, {"enabled": False})
    noop.submit()
    assert outbox_count(hooks) == 1


def test_every_announced_type_reaches_a_verifying_receiver(
    hooks: Tracker, receiver: Receiver
) -> None:
    subscribe(hooks, receiver)

    @hooks.job("work", max_attempts=2, retry_backoff=0.01)
    def work(ctx: Context, mode: str) -> None:
        if mode == "retry" and ctx.attempt == 1:
            raise RuntimeError("once")
        if mode == "fail":
            raise RuntimeError("boom")
        with ctx.item("a"):
            ctx.stage("fetch")
            ctx.wait("for the remote side")
            ctx.progress(50)
        if mode == "partial":
            with ctx.item("b"):
                raise ValueError("bad item")

    @hooks.job("late", expire_after=0.01)
    def late(ctx: Context) -> None: ...

    orphan = work.submit(mode="ok")
    hooks.store.runs.claim("dead-host:1:0", "lease", 1, kinds=["work"])  # a worker that died
    time.sleep(0.05)
    assert [j.id for j in hooks.store.expiry.rescue(0.01)] == [orphan.id]
    expiring = late.submit()
    time.sleep(0.05)
    hooks.ops.expire()
    cancelled = work.submit(mode="ok", run_after=hooks.store.clock() + timedelta(hours=1))
    hooks.cancel(cancelled.id)
    jobs = [work.submit(mode=m) for m in ("ok", "retry", "fail", "partial")]

    with hooks.worker(concurrency=2):
        for job in [orphan, *jobs]:
            hooks.wait(job.id, timeout=10)
        ends = {"job.succeeded", "job.failed", "job.partial"}
        ended = {orphan.id, *(j.id for j in jobs)}
        receiver.wait_for(lambda got: {r.job_id for r in got if r.type in ends} >= ended)
        assert set(EVENT_TYPES) - {r.type for r in receiver.accepted()} == set()

    got = receiver.accepted()
    assert receiver.unverified == 0
    assert all(r.verified_by == tuple(receiver.secrets) for r in got)
    assert "job.rescued" in types_of(got, orphan.id)
    assert types_of(got, expiring.id) == ["job.created", "job.expired"]
    assert types_of(got, cancelled.id) == ["job.created", "job.cancelled"]
    ok = types_of(got, jobs[0].id)
    assert ok == ["job.created", "job.started", "job.stage", "job.waiting", "job.succeeded"]
    assert types_of(got, jobs[1].id) == ["job.created", "job.started", "job.retrying", *ok[1:]]
    assert types_of(got, jobs[2].id)[-1] == "job.failed"
    assert types_of(got, jobs[3].id)[-1] == "job.partial"
    assert len({r.id for r in got}) == len(got)  # one webhook-id per delivery


def test_the_payload_carries_the_event_and_the_job_as_the_api_shows_it(
    hooks: Tracker, receiver: Receiver
) -> None:
    subscribe(hooks, receiver, event_types=["job.succeeded"])

    @hooks.job("report")
    def report(ctx: Context, token: str) -> dict[str, int]:
        return {"rows": 3}

    job = report.submit(token="s3cr3t-value", owner="acme", labels={"team": "data"})
    with hooks.worker(concurrency=1):
        hooks.wait(job.id, timeout=10)
        assert receiver.wait_for(lambda got: len(got) == 1)

    (got,) = receiver.accepted()
    assert got.body["type"] == "job.succeeded"
    event = got.body["data"]["event"]
    assert event["type"] == "succeeded"
    assert got.body["timestamp"] == event["at"]
    document = got.body["data"]["job"]
    assert document["id"] == job.id
    assert document["status"] == "succeeded"
    assert document["result"] == {"rows": 3}
    assert document["owner"] == "acme"
    assert "s3cr3t-value" not in str(got.body)  # the payload is redacted as the API shows it
    assert got.headers["webhook-id"].startswith("msg_")


def test_filters_pick_the_events_a_subscription_gets(hooks: Tracker, receiver: Receiver) -> None:
    subscribe(hooks, receiver, event_types=["failed"], kinds=["b"], labels={"tier": "gold"})

    @hooks.job("a")
    def a(ctx: Context) -> None:
        raise RuntimeError("a fails")

    @hooks.job("b")
    def b(ctx: Context, fail: bool) -> None:
        if fail:
            raise RuntimeError("b fails")

    wanted = b.submit(fail=True, labels={"tier": "gold"})
    others = [
        a.submit(labels={"tier": "gold"}),
        b.submit(fail=False, labels={"tier": "gold"}),
        b.submit(fail=True, labels={"tier": "silver"}),
        b.submit(fail=True),
    ]
    with hooks.worker(concurrency=2):
        for job in [wanted, *others]:
            hooks.wait(job.id, timeout=10)
        assert receiver.wait_for(lambda got: len(got) >= 1)
        courier = Courier.of(hooks.runtime)
        courier.turn()  # whatever else would have been made is made now
    assert [(r.job_id, r.type) for r in receiver.accepted()] == [(wanted.id, "job.failed")]


def test_an_owner_subscription_gets_its_own_jobs_only(hooks: Tracker, receiver: Receiver) -> None:
    subscribe(hooks, receiver, owner="acme")

    @hooks.job("noop")
    def noop(ctx: Context) -> None: ...

    mine = noop.submit(owner="acme")
    theirs = noop.submit(owner="other")
    unowned = noop.submit()
    Courier.of(hooks.runtime).turn()
    assert receiver.wait_for(lambda got: len(got) >= 1)
    assert {r.job_id for r in receiver.accepted()} == {mine.id}
    assert theirs.id != unowned.id


def test_deliveries_of_one_job_arrive_in_order(hooks: Tracker, receiver: Receiver) -> None:
    subscribe(hooks, receiver)
    receiver.answers.extend([500, 500])  # the first deliveries fail: the later wait behind

    @hooks.job("staged")
    def staged(ctx: Context) -> None:
        for name in ("one", "two", "three"):
            ctx.stage(name)

    job = staged.submit()
    with hooks.worker(concurrency=1):
        hooks.wait(job.id, timeout=10)
        assert receiver.wait_for(lambda got: "job.succeeded" in types_of(got, job.id))
    assert types_of(receiver.accepted(), job.id) == [
        "job.created",
        "job.started",
        "job.stage",
        "job.stage",
        "job.stage",
        "job.succeeded",
    ]
    stages = [r.body["data"]["event"]["message"] for r in receiver.accepted()]
    assert [m for m in stages if m in ("one", "two", "three")] == ["one", "two", "three"]


def test_a_subscription_is_refused_for_bad_input_and_nothing_is_stored(hooks: Tracker) -> None:
    bad: list[dict[str, object]] = [
        {"url": "ftp://example.com/hook"},
        {"url": "http://user:pw@example.com/hook"},
        {"url": "/relative"},
        {"url": "http://example.com/" + "x" * 2100},
        {"url": "http://93.184.215.14/hook", "event_types": ["job.exploded"]},
        {"url": "http://93.184.215.14/hook", "kinds": [f"k{i}" for i in range(51)]},
        {"url": "http://93.184.215.14/hook", "labels": {f"k{i}": "v" for i in range(21)}},
        {"url": "http://93.184.215.14/hook", "labels": {"k": {"nested": 1}}},
        {"url": "http://93.184.215.14/hook", "queues": "default"},
    ]
    for given in bad:
        url = str(given.pop("url"))
        with pytest.raises(WebhookRefused):
            hooks.webhooks.subscribe(url, **given)  # type: ignore[arg-type]
    assert hooks.webhooks.list() == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fd00:ec2::254]/hook",
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ],
)
def test_internal_addresses_are_refused_unless_allowed(tmp_path: object, url: str) -> None:
    with Tracker(f"sqlite:///{tmp_path}/t.db") as tracker:
        with pytest.raises(WebhookRefused, match="address"):
            tracker.webhooks.subscribe(url)
        assert tracker.webhooks.list() == []
        if "169.254" in url or "fd00:ec2" in url:  # metadata: refused even when allowed
            with pytest.raises(WebhookRefused, match="metadata"):
                tracker.webhooks.subscribe(url, allow_private=True)
        else:
            tracker.webhooks.subscribe(url, allow_private=True)


def test_an_owner_reaches_only_its_own_subscriptions(hooks: Tracker, receiver: Receiver) -> None:
    theirs = subscribe(hooks, receiver, owner="other")
    mine = subscribe(hooks, receiver, owner="acme")

    assert [s.id for s in hooks.webhooks.list(owner="acme")] == [mine]
    for act in (
        lambda: hooks.webhooks.get(theirs, owner="acme"),
        lambda: hooks.webhooks.delete(theirs, owner="acme"),
        lambda: hooks.webhooks.rotate(theirs, owner="acme"),
        lambda: hooks.webhooks.update(theirs, {"enabled": False}, owner="acme"),
    ):
        with pytest.raises(WebhookNotFound):
            act()
    assert hooks.webhooks.get(theirs).enabled


def test_a_replayed_delivery_arrives_again_with_the_same_webhook_id(
    hooks: Tracker, receiver: Receiver
) -> None:
    subscribe(hooks, receiver, event_types=["job.created"])

    @hooks.job("noop")
    def noop(ctx: Context) -> None: ...

    job = noop.submit()
    courier = Courier.of(hooks.runtime)
    courier.turn()
    (first,) = hooks.webhooks.job_deliveries(job.id)
    assert first.status is DeliveryStatus.DELIVERED

    replayed = hooks.webhooks.replay(first.id)
    assert replayed.status is DeliveryStatus.PENDING
    courier.turn()
    got = receiver.accepted()
    assert [r.id for r in got] == [first.id, first.id]
    assert got[0].body == got[1].body
    (again,) = hooks.webhooks.job_deliveries(job.id)
    assert again.status is DeliveryStatus.DELIVERED
    assert [a.status_code for a in again.tries] == [200, 200]


def test_finished_deliveries_are_purged_with_their_attempts(
    hooks: Tracker, receiver: Receiver
) -> None:
    subscribe(hooks, receiver, event_types=["job.created"])

    @hooks.job("noop")
    def noop(ctx: Context) -> None: ...

    job = noop.submit()
    Courier.of(hooks.runtime).turn()
    deliveries = hooks.store.webhooks.deliveries
    assert deliveries.purge(hooks.store.clock() - timedelta(days=1)) == 0
    assert deliveries.purge(hooks.store.clock() + timedelta(seconds=1)) == 1
    assert hooks.webhooks.job_deliveries(job.id) == []
    with hooks.store.database.engine.connect() as conn:
        count = sa.select(sa.func.count()).select_from(webhook_deliveries)
        assert conn.execute(count).scalar() == 0
