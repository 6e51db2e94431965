"""Idempotency keys: unique per owner, so another owner's key is simply a different key — and a
schedule's slot jobs cannot be squatted by another owner."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from jobtrail import Context, DuplicateKey, JobNotFound, Status, Tracker
from jobtrail.jobs import NewJob
from jobtrail.kinds import JobHandle
from jobtrail.scheduler import Schedule, Scheduler
from jobtrail.store.database import create_engine
from jobtrail.store.migrate import upgrade
from jobtrail.store.tables import UTCDateTime, metadata
from tests.clock import T0, FakeClock
from tests.web.client import TESTCLIENT_WARNING, bearer, open_client


@pytest.fixture
def sync(tracker: Tracker) -> JobHandle[None]:
    @tracker.job("sync")
    def sync(ctx: Context, account: str) -> None: ...

    return sync


def test_the_same_key_from_another_owner_is_a_new_job(
    tracker: Tracker, sync: JobHandle[None]
) -> None:
    mine = sync.submit(account="A1", owner="A", key="nightly")
    theirs, created = tracker.submit_or_get("sync", {"account": "B1"}, owner="B", key="nightly")
    unowned, unowned_created = tracker.submit_or_get("sync", {"account": "C1"}, key="nightly")

    assert created
    assert unowned_created
    assert len({mine.id, theirs.id, unowned.id}) == 3
    assert (theirs.owner, theirs.payload) == ("B", {"account": "B1"})
    assert unowned.owner is None


def test_the_same_key_from_the_same_owner_is_the_existing_job(
    tracker: Tracker, sync: JobHandle[None]
) -> None:
    first = sync.submit(account="A1", owner="A", key="nightly")
    again, created = tracker.submit_or_get("sync", {"account": "A2"}, owner="A", key="nightly")
    no_owner = sync.submit(account="X", key="k")
    no_owner_again = sync.submit(account="Y", key="k")

    assert not created
    assert again.id == first.id
    assert again.payload == {"account": "A1"}
    assert no_owner_again.id == no_owner.id
    assert tracker.list().total_count == 2


def test_a_batch_with_keys_of_several_owners_returns_each_owners_own_job(
    tracker: Tracker,
) -> None:
    a = tracker.add(NewJob("remote", key="k", owner="A"))[0]
    b = tracker.add(NewJob("remote", key="k", owner="B"))[0]

    found = tracker.store.jobs.add_or_get(
        [NewJob("remote", key="k", owner="B"), NewJob("remote", key="k", owner="A")]
    )

    assert [(job.id, created) for job, created in found] == [(b.id, False), (a.id, False)]


@pytest.mark.parametrize("owner", ["A", None], ids=["owned", "unowned"])
def test_another_owner_holding_the_next_slots_keys_does_not_suppress_a_schedule(
    database_url: str, owner: str | None
) -> None:
    clock = FakeClock(T0 + timedelta(seconds=0.25))
    with Tracker(database_url, clock=clock) as tracker:

        @tracker.job("beat")
        def beat(ctx: Context) -> None: ...

        tracker.schedule("pulse", "beat", every=1, owner=owner)
        slots = [T0 + timedelta(seconds=n) for n in (1, 2, 3)]
        pulse = Schedule("pulse", "beat", every=1, owner=owner)
        squatted = {beat.submit(owner="B", key=pulse.key(slot)).id for slot in slots}
        scheduler = Scheduler.of(tracker.runtime, "worker-0")
        scheduler.register()

        fired = []
        for slot in slots:
            clock.now = slot + timedelta(seconds=0.1)
            fired += [r for r in scheduler.tick() if r.outcome == "fired"]

        assert [r.slot_at for r in fired] == slots
        own = [tracker.get(r.job_id) for r in fired if r.job_id is not None]
        assert len(own) == 3
        assert not {job.id for job in own} & squatted
        assert all(job.owner == owner and job.schedule == "pulse" for job in own)
        assert [job.key for job in own] == [pulse.key(slot) for slot in slots]


def test_migrating_an_older_store_scopes_its_keys_by_owner_and_keeps_its_history(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        _recreate_at_0003(engine)
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, key_scope, external FROM jobs ORDER BY id")
            ).all()
            events = conn.execute(sa.text("SELECT count(*) FROM job_events")).scalar_one()
    finally:
        engine.dispose()

    assert [(r.id, r.key_scope, bool(r.external)) for r in rows] == [
        ("j-a", "A", False),
        ("j-none", "", True),
    ]
    assert events == 2
    with Tracker(database_url) as tracker:
        theirs, created = tracker.add(NewJob("remote", key="k", owner="B"))
        assert created
        assert theirs.id != "j-a"
        assert tracker.add(NewJob("remote", key="k", owner="A"))[0].id == "j-a"
        assert tracker.add(NewJob("remote", key="k2"))[0].id == "j-none"


def _recreate_at_0003(engine: sa.Engine) -> None:
    """A store at revision 0003 holding two keyed jobs with history: an owner's, finished by
    a worker, and one without an owner that was reported running."""
    metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    upgrade(engine, "0003")
    row = (
        "INSERT INTO jobs (id, key, kind, owner, trigger, queue, priority, status, progress, "
        "attempt, max_attempts, created_at, updated_at, run_after, cancel_requested, stalled, "
        "worker, started_at) VALUES (:id, :key, 'remote', :owner, 'api', 'default', 1, :status, "
        "0, 1, 1, :at, :at, :at, false, false, :worker, :at)"
    )
    at = sa.bindparam("at", T0, type_=UTCDateTime())
    event = "INSERT INTO job_events (job_id, at, type) VALUES (:j, :at, 'created')"
    with engine.begin() as conn:
        insert = sa.text(row).bindparams(at)
        conn.execute(
            insert, {"id": "j-a", "key": "k", "owner": "A", "status": "succeeded", "worker": "w"}
        )
        conn.execute(
            insert,
            {"id": "j-none", "key": "k2", "owner": None, "status": "running", "worker": None},
        )
        for job_id in ("j-a", "j-none"):
            conn.execute(sa.text(event).bindparams(at), {"j": job_id})


# -- looking jobs up by key -----------------------------------------------------------------


def test_a_job_is_found_by_its_key_in_its_owners_scope(
    tracker: Tracker, sync: JobHandle[None]
) -> None:
    mine = sync.submit(account="A1", owner="A", key="msg-1")
    unowned = sync.submit(account="X", key="msg-1")

    assert tracker.get_by_key("msg-1", owner="A").id == mine.id
    assert tracker.get_by_key("msg-1").id == unowned.id
    with pytest.raises(JobNotFound):
        tracker.get_by_key("msg-1", owner="B")
    with pytest.raises(JobNotFound):
        tracker.get_by_key("msg-2", owner="A")


def test_tracking_a_block_under_a_taken_key_raises_duplicate_key_naming_the_job(
    tracker: Tracker,
) -> None:
    with tracker.track("trace", key="msg-7", owner="A") as ctx:
        ctx.advance()
    first = tracker.get(ctx.job_id)

    with pytest.raises(DuplicateKey) as raised, tracker.track("trace", key="msg-7", owner="A"):
        pytest.fail("the block must not run")

    assert raised.value.job.id == first.id
    assert raised.value.key == "msg-7"
    assert str(raised.value) == f"the key 'msg-7' already names job {first.id} (succeeded)"
    assert tracker.get(first.id) == first
    assert tracker.list().total_count == 1
    with tracker.track("trace", key="msg-7", owner="B") as other:  # another owner's scope
        pass
    assert tracker.get_by_key("msg-7", owner="B").id == other.job_id


def test_a_duplicate_key_while_the_first_block_still_runs_leaves_it_running(
    tracker: Tracker,
) -> None:
    with tracker.track("trace", key="msg-8") as ctx:
        with pytest.raises(DuplicateKey) as raised, tracker.track("trace", key="msg-8"):
            pass
        assert raised.value.job.status is Status.RUNNING
        ctx.advance()
    assert tracker.get(ctx.job_id).status is Status.SUCCEEDED


@pytest.fixture
def keyed_api(tracker: Tracker, sync: JobHandle[None]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A client of the app and the headers of an admin and owners A and B."""
    from jobtrail.web import create_app

    with open_client(create_app(tracker, run_worker=False)) as client:
        headers = {
            name: bearer(tracker.ops.create_token(name, owner))
            for name, owner in [("admin", None), ("A", "A"), ("B", "B")]
        }
        yield client, headers


@TESTCLIENT_WARNING
def test_get_by_key_over_http_is_scoped_like_every_read(
    tracker: Tracker, sync: JobHandle[None], keyed_api: tuple[Any, dict[str, Any]]
) -> None:
    client, headers = keyed_api
    owned = sync.submit(account="A1", owner="A", key="s3://bucket/doc.pdf")
    unowned = sync.submit(account="X", key="s3://bucket/doc.pdf")
    url = "/api/v1/jobs/by-key/s3://bucket/doc.pdf"

    def get(who: str, **params: str) -> Any:
        return client.get(url, params=params, headers=headers[who])

    assert get("A").json()["id"] == owned.id
    assert get("admin", owner="A").json()["id"] == owned.id
    assert get("admin").json()["id"] == unowned.id
    assert get("B").status_code == 404
    assert get("A", owner="B").status_code == 404
    missing = client.get("/api/v1/jobs/by-key/nothing", headers=headers["A"])
    hidden = get("B")
    assert missing.status_code == hidden.status_code == 404
    assert set(missing.json()) == set(hidden.json()) == {"detail"}
    progress_key = client.get("/api/v1/jobs/by-key/progress", headers=headers["A"])
    assert progress_key.status_code == 404  # a key, not the progress of job "by-key"
