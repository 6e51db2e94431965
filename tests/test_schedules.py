"""Schedules: slot arithmetic, one job per slot across racing schedulers, missed slots, startup."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobtrail import Context, PayloadError, Status, Tracker, UnknownKind, UnknownSchedule
from jobtrail.jobs import ScheduleRun
from jobtrail.scheduler import MAX_MISSED_RECORDED, Schedule, Scheduler
from jobtrail.store import Store
from tests.clock import T0, FakeClock
from tests.waiting import until


def at(seconds: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds, minutes=minutes)


# -- slot arithmetic --------------------------------------------------------------------


def test_an_interval_slot_is_the_last_multiple_of_every_since_the_epoch() -> None:
    minutely = Schedule("s", "k", every=60)

    assert minutely.latest_slot(at(seconds=30)) == T0
    assert minutely.latest_slot(T0) == T0
    assert minutely.latest_slot(at(seconds=59.999)) == T0
    assert minutely.next_slot(T0) == at(minutes=1)
    assert minutely.next_slot(at(seconds=30)) == at(minutes=1)
    assert Schedule("s", "k", every=0.5).latest_slot(at(seconds=0.7)) == at(seconds=0.5)


def test_a_cron_slot_is_the_last_time_the_expression_matched() -> None:
    quarterly = Schedule("s", "k", cron="*/15 * * * *")

    assert quarterly.latest_slot(at(minutes=7)) == T0
    assert quarterly.latest_slot(at(minutes=15)) == at(minutes=15)
    assert quarterly.next_slot(at(minutes=15)) == at(minutes=30)
    assert quarterly.next_slot(at(minutes=14, seconds=59)) == at(minutes=15)

    weekdays = Schedule("s", "k", cron="0 9 * * 1-5")
    assert weekdays.latest_slot(T0) == datetime(2024, 5, 31, 9, 0, tzinfo=UTC)  # Friday
    assert weekdays.next_slot(T0) == datetime(2024, 6, 3, 9, 0, tzinfo=UTC)  # Monday
    assert weekdays.latest_slot(T0).tzinfo is not None


def test_slots_between_lists_the_due_slots_after_the_last_one_oldest_first() -> None:
    minutely = Schedule("s", "k", every=60)

    assert minutely.slots_between(T0, at(minutes=3, seconds=30)) == [
        at(minutes=1),
        at(minutes=2),
        at(minutes=3),
    ]
    assert minutely.slots_between(T0, at(seconds=59)) == []
    assert minutely.slots_between(T0, T0) == []
    assert minutely.slots_between(at(seconds=30), at(minutes=2)) == [at(minutes=1), at(minutes=2)]

    quarterly = Schedule("s", "k", cron="*/15 * * * *")
    assert quarterly.slots_between(T0, at(minutes=60)) == [
        at(minutes=15),
        at(minutes=30),
        at(minutes=45),
        at(minutes=60),
    ]


def test_after_a_long_gap_slots_between_keeps_only_the_newest_slots() -> None:
    every_second = Schedule("s", "k", every=1)

    slots = every_second.slots_between(T0, at(seconds=1000))

    assert len(slots) == MAX_MISSED_RECORDED + 1
    assert slots[-1] == at(seconds=1000)
    assert slots[0] == at(seconds=1000 - MAX_MISSED_RECORDED)
    assert slots == sorted(slots)


def test_a_slot_key_names_the_schedule_and_the_slot() -> None:
    assert (
        Schedule("nightly", "k", every=60).key(T0) == "schedule:nightly:2024-06-01T12:00:00+00:00"
    )


@pytest.mark.parametrize(
    "rule",
    [{}, {"cron": "* * * * *", "every": 60.0}, {"every": 0.0}, {"every": -5.0}, {"cron": "nope"}],
    ids=["neither", "both", "zero", "negative", "bad-cron"],
)
def test_a_schedule_needs_exactly_one_valid_rule(rule: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="schedule 's'"):
        Schedule("s", "k", **rule)


def test_scheduling_an_unknown_kind_or_a_payload_that_does_not_fit_fails_at_once(
    tracker: Tracker,
) -> None:
    @tracker.job("report")
    def report(ctx: Context, account: str) -> None: ...

    with pytest.raises(UnknownKind):
        tracker.schedule("s", "nope", every=60)
    with pytest.raises(PayloadError):
        tracker.schedule("s", "report", every=60, payload={"acount": "A1"})
    with pytest.raises(UnknownSchedule):
        tracker.run_schedule("s")
    assert tracker.schedules == {}


# -- schedulers on a store --------------------------------------------------------------


def by_slot(runs: list[ScheduleRun]) -> dict[datetime, list[str]]:
    outcomes: dict[datetime, list[str]] = defaultdict(list)
    for run in runs:
        outcomes[run.slot_at].append(run.outcome)
    return dict(outcomes)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at(seconds=0.25))


def scheduled_tracker(database_url: str, clock: FakeClock | None = None) -> Tracker:
    """A tracker with kind ``beat`` and schedule ``pulse`` (every second)."""
    tracker = Tracker(database_url, clock=clock)

    @tracker.job("beat")
    def beat(ctx: Context, source: str) -> str:
        return source

    tracker.schedule("pulse", "beat", every=1, payload={"source": "pulse"}, owner="ops")
    return tracker


@pytest.fixture
def three(database_url: str, clock: FakeClock) -> Iterator[list[Tracker]]:
    """Three trackers on one store and one clock, as three processes would be."""
    trackers = [scheduled_tracker(database_url, clock) for _ in range(3)]
    try:
        yield trackers
    finally:
        for t in trackers:
            t.close()


def meet_after_reading(
    store: Store, barrier: threading.Barrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make ``store``'s scheduler wait, after reading a schedule, until the others have read it
    too: the tightest race between processes ticking the same slot."""
    read = store.schedules.get

    def read_then_meet(name: str) -> Any:
        state = read(name)
        barrier.wait()
        return state

    monkeypatch.setattr(store.schedules, "get", read_then_meet)


def test_schedulers_racing_for_a_slot_create_one_job_and_record_who_fired_it(
    three: list[Tracker], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedulers = [Scheduler.of(t.runtime, f"worker-{n}") for n, t in enumerate(three)]
    for s in schedulers:
        s.register()
    barrier = threading.Barrier(3, timeout=10)
    for t in three:
        meet_after_reading(t.store, barrier, monkeypatch)

    with ThreadPoolExecutor(3) as pool:
        for slot in range(1, 4):
            clock.now = at(seconds=slot + 0.25)
            results = list(pool.map(Scheduler.tick, schedulers))
            assert sorted(len(r) for r in results) == [1, 1, 1]

    tracker = three[0]
    jobs = tracker.list(kind="beat").jobs
    slots = [at(seconds=n) for n in (1, 2, 3)]
    assert sorted(j.key or "" for j in jobs) == [f"schedule:pulse:{s.isoformat()}" for s in slots]
    assert {(j.trigger, j.schedule, j.owner) for j in jobs} == {("scheduled", "pulse", "ops")}
    assert all(j.payload == {"source": "pulse"} for j in jobs)

    runs = tracker.store.schedules.runs("pulse")
    assert {slot: sorted(outcomes) for slot, outcomes in by_slot(runs).items()} == {
        slot: ["deduplicated", "deduplicated", "fired"] for slot in slots
    }
    job_of = {j.key: j.id for j in jobs}
    assert all(r.job_id == job_of[f"schedule:pulse:{r.slot_at.isoformat()}"] for r in runs)
    fired_by = Counter(r.worker for r in runs if r.outcome == "fired")
    assert sum(fired_by.values()) == 3
    assert set(fired_by) <= {"worker-0", "worker-1", "worker-2"}


@pytest.mark.timeout(60)
def test_three_schedulers_ticking_in_real_time_fire_each_slot_exactly_once(
    database_url: str,
) -> None:
    trackers = [scheduled_tracker(database_url) for _ in range(3)]
    errors: list[BaseException] = []

    def tick_until(tracker: Tracker, name: str, deadline: float) -> None:
        scheduler = Scheduler.of(tracker.runtime, name)
        try:
            scheduler.register()
            while time.monotonic() < deadline:
                scheduler.tick()
                time.sleep(0.01)
        except BaseException as exc:  # reported by the test thread below
            errors.append(exc)

    # One deadline for the three, 3.2 s from before the first registration (where the slots
    # start): on a busy machine a registration can take a second, and a window of 3.2 s from
    # each one's own registration spanned a fifth slot.
    deadline = time.monotonic() + 3.2
    threads = [
        threading.Thread(target=tick_until, args=(t, f"process-{n}", deadline))
        for n, t in enumerate(trackers)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []

        tracker = trackers[0]
        jobs = tracker.list(kind="beat").jobs
        keys = [j.key or "" for j in jobs]
        slot_times = sorted(datetime.fromisoformat(k.removeprefix("schedule:pulse:")) for k in keys)
        assert 2 <= len(jobs) <= 4
        assert len(set(keys)) == len(keys)
        assert all(j.trigger == "scheduled" for j in jobs)
        gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(slot_times)}
        assert gaps == {1.0}

        outcomes = by_slot(tracker.store.schedules.runs("pulse"))
        assert sorted(outcomes) == slot_times
        for slot, seen in outcomes.items():
            assert seen.count("fired") == 1, slot
            assert set(seen) <= {"fired", "deduplicated"}, slot
    finally:
        for t in trackers:
            t.close()


def test_after_a_gap_the_missed_slots_are_recorded_and_only_the_latest_fires(
    database_url: str, clock: FakeClock
) -> None:
    with scheduled_tracker(database_url, clock) as tracker:
        scheduler = Scheduler.of(tracker.runtime, "worker-0")
        scheduler.register()  # at 12:00:00.25: slot 12:00:00 counts as handled

        clock.now = at(seconds=6.5)
        runs = scheduler.tick()

        assert [(r.slot_at, r.outcome) for r in runs] == [
            *[(at(seconds=n), "missed") for n in range(1, 6)],
            (at(seconds=6), "fired"),
        ]
        jobs = tracker.list(kind="beat").jobs
        assert [j.key for j in jobs] == [f"schedule:pulse:{at(seconds=6).isoformat()}"]
        assert all(r.job_id is None for r in runs if r.outcome == "missed")
        assert scheduler.tick() == []

        clock.now = at(seconds=7.1)
        assert [(r.slot_at, r.outcome) for r in scheduler.tick()] == [(at(seconds=7), "fired")]
        assert tracker.list(kind="beat").total_count == 2
        stored = tracker.store.schedules.get("pulse")
        assert stored is not None
        assert stored.last_slot_at == at(seconds=7)
        assert stored.next_run_at == at(seconds=8)


def test_a_cron_schedule_fires_its_slot_with_the_slot_as_the_key(
    database_url: str, clock: FakeClock
) -> None:
    clock.now = at(minutes=2)
    with Tracker(database_url, clock=clock) as tracker:

        @tracker.job("report")
        def report(ctx: Context) -> None: ...

        tracker.schedule("quarter", "report", cron="*/15 * * * *")
        scheduler = Scheduler.of(tracker.runtime, "worker-0")
        scheduler.register()
        clock.now = at(minutes=14)
        assert scheduler.tick() == []

        clock.now = at(minutes=15, seconds=10)
        runs = scheduler.tick()

        assert [(r.slot_at, r.outcome) for r in runs] == [(at(minutes=15), "fired")]
        job = tracker.get(runs[0].job_id or "")
        assert job.key == "schedule:quarter:2024-06-01T12:15:00+00:00"
        assert job.trigger == "scheduled"


def test_a_running_worker_creates_and_runs_the_jobs_of_its_schedules(tracker: Tracker) -> None:
    @tracker.job("beat")
    def beat(ctx: Context, source: str) -> str:
        return source

    tracker.schedule("fast", "beat", every=0.5, payload={"source": "fast"})
    with tracker.worker(1, poll_interval=0.01, heartbeat_interval=0.1):
        done = until(
            lambda: tracker.list(kind="beat", status=Status.SUCCEEDED).jobs,
            timeout=5,
            what="a scheduled job to run",
        )

    job = done[0]
    assert (job.trigger, job.schedule, job.result) == ("scheduled", "fast", "fast")
    assert job.key is not None
    assert job.key.startswith("schedule:fast:")
    assert [r.outcome for r in tracker.store.schedules.runs("fast")].count("fired") >= 1


def test_running_a_schedule_by_hand_queues_a_manual_job_outside_its_slots(
    tracker: Tracker,
) -> None:
    @tracker.job("beat")
    def beat(ctx: Context, source: str) -> str:
        return source

    tracker.schedule("pulse", "beat", every=3600, payload={"source": "hand"})
    first = tracker.run_schedule("pulse", actor="ops")
    second = tracker.run_schedule("pulse")

    assert first.id != second.id
    assert (first.trigger, first.schedule, first.key, first.payload) == (
        "manual",
        "pulse",
        None,
        {"source": "hand"},
    )


def test_a_scheduled_job_expires_by_the_trackers_clock_not_the_wall_clock(
    database_url: str,
) -> None:
    clock = FakeClock(datetime(2031, 1, 1, tzinfo=UTC))
    with Tracker(database_url, clock=clock) as tracker:

        @tracker.job("beat", expire_after=60)
        def beat(ctx: Context) -> None: ...

        tracker.schedule("pulse", "beat", every=3600)
        job = tracker.run_schedule("pulse")

    assert job.expires_at == clock.now + timedelta(seconds=60)


def test_startup_jobs_are_submitted_once_per_deployment_start_not_per_worker(
    database_url: str,
) -> None:
    clock = FakeClock(at(seconds=59.5))  # half a second before a window boundary
    with Tracker(database_url, clock=clock, startup_window=60) as tracker:
        greeted: list[str] = []

        @tracker.job("warm_cache")
        def warm_cache(ctx: Context, region: str) -> None:
            greeted.append(region)

        tracker.on_startup("warm_cache", {"region": "eu"}, owner="ops")
        tracker.on_startup("warm_cache", {"region": "us"}, owner="ops")
        for moment in (at(seconds=59.5), at(seconds=59.9), at(seconds=61)):  # one deployment
            clock.now = moment
            tracker.worker(1, poll_interval=0.01).run(burst=True)
        clock.now = at(minutes=5)  # the next deployment
        tracker.worker(1, poll_interval=0.01).run(burst=True)

        jobs = tracker.list(kind="warm_cache").jobs
    assert sorted(greeted) == ["eu", "eu", "us", "us"]
    assert {(j.trigger, j.owner, j.status) for j in jobs} == {("startup", "ops", Status.SUCCEEDED)}
    keys = sorted(j.key or "" for j in jobs)
    assert [k.rsplit(":", 1)[0] for k in keys[:2]] == ["startup:warm_cache:" + T0.isoformat()] * 2
    assert len(set(keys)) == 4


def test_a_startup_job_with_a_bad_payload_is_refused_when_it_is_declared(
    tracker: Tracker,
) -> None:
    @tracker.job("warm_cache")
    def warm_cache(ctx: Context, region: str) -> None: ...

    with pytest.raises(PayloadError):
        tracker.on_startup("warm_cache", {"zone": "eu"})
    with pytest.raises(UnknownKind):
        tracker.on_startup("nope")
    assert tracker.startup == []
