"""The courier against a real receiver on both dialects: retries with the same webhook-id,
timeouts, closed connections, a receiver that is down then up, two couriers that never send
one delivery twice, a dead lease holder's delivery sent again, rotation, the retry window."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from jobtrail import Context, Tracker
from jobtrail.courier import Courier
from jobtrail.webhooks import DeliveryStatus
from tests.webhook_receiver import CLOSE, Receiver, serving
from tests.webhook_receiver import FAST as WEBHOOKS

FAST = WEBHOOKS | {"webhook_poll_interval": 0.05, "webhook_timeout": 0.5}


@pytest.fixture
def hooks(database_url: str) -> Iterator[Tracker]:
    with Tracker(database_url, **FAST).open() as tracker:
        yield tracker


def created_jobs(tracker: Tracker, receiver: Receiver, count: int = 1) -> list[str]:
    """Subscribe ``receiver`` to ``job.created`` and submit ``count`` jobs."""
    _, secret = tracker.webhooks.subscribe(receiver.url, event_types=["job.created"])
    receiver.secrets.append(secret)

    @tracker.job("noop")
    def noop(ctx: Context) -> None: ...

    return [noop.submit().id for _ in range(count)]


def run_until(courier: Courier, done: threading.Event | None = None, turns: int = 200) -> None:
    """Turn ``courier`` until it sends nothing more for a moment (or ``done`` is set)."""
    idle = 0
    for _ in range(turns):
        if done is not None and done.is_set():
            return
        if courier.turn():
            idle = 0
        else:
            idle += 1
            if idle > 10:
                return
            threading.Event().wait(0.03)


@pytest.mark.parametrize("failure", [500, CLOSE], ids=["status-500", "connection-closed"])
def test_a_failed_delivery_is_retried_with_the_same_webhook_id(
    hooks: Tracker, receiver: Receiver, failure: int
) -> None:
    (job_id,) = created_jobs(hooks, receiver)
    receiver.answers.extend([failure, failure])

    run_until(Courier.of(hooks.runtime))

    (got,) = receiver.accepted()
    assert receiver.attempts == 3
    (delivery,) = hooks.webhooks.job_deliveries(job_id)
    assert delivery.id == got.id
    assert delivery.status is DeliveryStatus.DELIVERED
    assert [a.status_code for a in delivery.tries] == (
        [500, 500, 200] if failure == 500 else [None, None, 200]
    )
    first = delivery.tries[0]
    assert first.error is not None
    if failure == 500:
        assert first.response == "x" * 1024  # the answer's body, capped at 1 KiB
    assert all(a.duration >= 0 for a in delivery.tries)


def test_a_receiver_slower_than_the_timeout_is_retried(hooks: Tracker, receiver: Receiver) -> None:
    (job_id,) = created_jobs(hooks, receiver)
    receiver.delay = 1.0  # twice the timeout

    Courier.of(hooks.runtime).turn()
    (delivery,) = hooks.webhooks.job_deliveries(job_id)
    assert delivery.status is DeliveryStatus.PENDING
    (attempt,) = delivery.tries
    assert attempt.status_code is None
    assert attempt.error is not None
    assert "Timeout" in attempt.error
    assert 0.4 < attempt.duration < 0.9

    receiver.delay = 0.0
    run_until(Courier.of(hooks.runtime))
    assert hooks.webhooks.job_deliveries(job_id)[0].status is DeliveryStatus.DELIVERED


def test_a_receiver_down_then_up_gets_every_delivery_once(hooks: Tracker) -> None:
    with serving() as receiver:
        port = receiver.port
    down = Receiver()
    down.port = port
    jobs = created_jobs(hooks, down, count=5)
    courier = Courier.of(hooks.runtime)
    courier.turn()
    courier.turn()
    assert all(
        d.status is DeliveryStatus.PENDING for j in jobs for d in hooks.webhooks.job_deliveries(j)
    )

    with serving(down, port=port) as receiver:
        run_until(courier)
        got = receiver.accepted()
    assert sorted(r.job_id for r in got) == sorted(jobs)
    assert len({r.id for r in got}) == 5
    assert receiver.unverified == 0


def test_two_couriers_never_send_one_delivery_twice(
    database_url: str, hooks: Tracker, receiver: Receiver
) -> None:
    jobs = created_jobs(hooks, receiver, count=40)
    with Tracker(database_url, **FAST) as other:
        couriers = [Courier.of(hooks.runtime), Courier.of(other.runtime)]
        threads = [threading.Thread(target=run_until, args=(c,)) for c in couriers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    got = receiver.accepted()
    assert len(got) == 40
    assert len({r.id for r in got}) == 40
    assert sorted(r.job_id for r in got) == sorted(jobs)
    assert receiver.attempts == 40


def test_a_delivery_whose_lease_holder_died_is_sent_by_another(
    hooks: Tracker, receiver: Receiver
) -> None:
    (job_id,) = created_jobs(hooks, receiver)
    deliveries = hooks.store.webhooks.deliveries
    deliveries.fan_out(lambda job: {"id": job.id})
    (claimed,) = deliveries.claim_due(10, lease_seconds=0.2)  # and its courier dies
    courier = Courier.of(hooks.runtime)
    assert courier.turn() == 0  # leased: nobody else sends it meanwhile

    threading.Event().wait(0.3)
    run_until(courier)
    (got,) = receiver.accepted()
    assert got.id == claimed.delivery.id
    # The dead courier's late record changes nothing: it no longer holds the lease.
    from jobtrail.webhooks import Attempt

    late = Attempt(hooks.store.clock(), 500, 0.1, "HTTP 500")
    assert not deliveries.record_attempt(claimed, late, DeliveryStatus.PENDING)
    assert hooks.webhooks.job_deliveries(job_id)[0].status is DeliveryStatus.DELIVERED


def test_after_a_rotation_both_secrets_sign_until_the_overlap_ends(
    database_url: str, receiver: Receiver
) -> None:
    with Tracker(database_url, **FAST, webhook_rotation_overlap=0.5).open() as tracker:
        (_first_job,) = created_jobs(tracker, receiver)
        subscription = tracker.webhooks.list()[0]
        old = receiver.secrets[0]
        _, new = tracker.webhooks.rotate(subscription.id)
        assert new != old
        receiver.secrets.append(new)
        courier = Courier.of(tracker.runtime)
        run_until(courier)
        assert receiver.accepted()[0].verified_by == (old, new)

        threading.Event().wait(0.6)
        tracker.submit("noop", {})
        run_until(courier)
        assert receiver.accepted()[1].verified_by == (new,)
        assert tracker.webhooks.get(subscription.id).previous_secret_until is not None


def test_a_delivery_failing_past_the_retry_window_fails_and_disables_its_subscription(
    database_url: str, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 503
    with Tracker(database_url, **FAST, webhook_retry_for=0.4).open() as tracker:
        (job_id,) = created_jobs(tracker, receiver)
        before = tracker.store.clock()
        with caplog.at_level(logging.WARNING, logger="jobtrail.webhooks"):
            run_until(Courier.of(tracker.runtime))
        (delivery,) = tracker.webhooks.job_deliveries(job_id)
        assert delivery.status is DeliveryStatus.FAILED
        assert len(delivery.tries) >= 3  # backed off: 0.05, 0.1, 0.2 s … until the window ended
        (subscription,) = tracker.webhooks.list()
        assert not subscription.enabled
        assert subscription.disabled_reason is not None
        assert "HTTP 503" in subscription.disabled_reason
        assert [s.id for s in tracker.webhooks.disabled_since(before)] == [subscription.id]
        assert "subscription disabled" in caplog.text
        assert receiver.secrets[0] not in caplog.text


def test_no_secret_is_logged_while_delivering(
    hooks: Tracker, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        created_jobs(hooks, receiver)
        receiver.answers.extend([500, CLOSE])
        run_until(Courier.of(hooks.runtime))
    assert receiver.accepted()
    secret = receiver.secrets[0]
    assert secret not in caplog.text
    assert secret.removeprefix("whsec_") not in caplog.text


def test_an_address_refused_at_send_time_is_not_contacted(
    database_url: str, receiver: Receiver
) -> None:
    with Tracker(database_url, **FAST).open() as allowed:
        (job_id,) = created_jobs(allowed, receiver)
    # The same store, now without loopback allowed: the name is vetted again at every send.
    strict = dict(FAST, webhook_allow_private=False)
    with Tracker(database_url, **strict).open() as tracker:
        Courier.of(tracker.runtime).turn()
        (delivery,) = tracker.webhooks.job_deliveries(job_id)
    assert receiver.attempts == 0
    assert delivery.tries[0].error is not None
    assert "loopback" in delivery.tries[0].error
    assert delivery.status is DeliveryStatus.PENDING


def test_a_worker_runs_the_courier_and_stops_it(hooks: Tracker, receiver: Receiver) -> None:
    jobs = created_jobs(hooks, receiver, count=3)
    before = couriers()
    with hooks.worker(concurrency=1):
        assert receiver.wait_for(lambda got: len(got) == 3, timeout=5)
        ours = couriers() - before
    assert len(ours) == 1
    assert not any(thread.is_alive() for thread in ours)
    assert sorted(r.job_id for r in receiver.accepted()) == sorted(jobs)


@pytest.mark.parametrize("deliver", [True, False])
def test_a_worker_runs_a_courier_unless_told_not_to(database_url: str, deliver: bool) -> None:
    with Tracker(database_url, **FAST, webhook_deliver=deliver) as tracker:

        @tracker.job("noop")
        def noop(ctx: Context) -> None: ...

        before = couriers()
        with tracker.worker(concurrency=1):
            ours = couriers() - before
    assert len(ours) == (1 if deliver else 0)


def couriers() -> set[threading.Thread]:
    """The courier threads alive in this process now (other tests' may linger: an in-process
    Celery worker's, or one finishing a request after its stop timed out)."""
    return {t for t in threading.enumerate() if t.name == "jobtrail-courier" and t.is_alive()}


KILLED_COURIER = """
import sys
from jobtrail import Tracker
from jobtrail.courier import Courier
tracker = Tracker(sys.argv[1], webhook_allow_private=True, webhook_timeout=0.5)
print("ready", flush=True)
Courier.of(tracker.runtime).turn()
"""


def test_a_courier_killed_mid_delivery_loses_it_to_another_with_the_same_id(
    database_url: str, hooks: Tracker, receiver: Receiver
) -> None:
    (job_id,) = created_jobs(hooks, receiver)
    hooks.store.webhooks.deliveries.fan_out(lambda job: {"id": job.id})
    receiver.delay = 0.3  # the request is in flight when its sender is killed
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_COURIER, database_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 8
        while receiver.attempts == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(10)
        assert child.stdout is not None
        child.stdout.close()
    assert receiver.attempts == 1
    (held,) = hooks.webhooks.job_deliveries(job_id)
    assert held.status is DeliveryStatus.PENDING  # its attempt was never recorded
    assert Courier.of(hooks.runtime).turn() == 0  # the dead courier's lease still holds it

    receiver.delay = 0.0
    courier = Courier.of(hooks.runtime)
    deadline = time.monotonic() + 6
    while not courier.turn() and time.monotonic() < deadline:
        time.sleep(0.05)
    (delivery,) = hooks.webhooks.job_deliveries(job_id)
    assert delivery.status is DeliveryStatus.DELIVERED
    got = receiver.accepted()
    assert {r.id for r in got} == {delivery.id}  # once or twice: the same webhook-id
    assert len(got) in (1, 2)
