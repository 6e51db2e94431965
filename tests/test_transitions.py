"""Every status-changing statement obeys ``TRANSITIONS``: a database trigger records each change
of the status column while every path that changes a status runs, and each recorded change
must be one the table allows."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from jobtrail import Cancelled, Context, Tracker
from jobtrail.jobs import NewJob, Progress
from jobtrail.runner import Runner
from jobtrail.states import TRANSITIONS, Status
from jobtrail.store import Store
from tests.rows import force

SQLITE_AUDIT = """
CREATE TRIGGER status_audit AFTER UPDATE OF status ON jobs
BEGIN INSERT INTO status_changes VALUES (OLD.status, NEW.status); END
"""
POSTGRES_AUDIT = (
    """CREATE FUNCTION status_audit() RETURNS trigger AS $$
    BEGIN INSERT INTO status_changes VALUES (OLD.status, NEW.status); RETURN NEW; END
    $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER status_audit AFTER UPDATE OF status ON jobs
    FOR EACH ROW EXECUTE FUNCTION status_audit()""",
)


@pytest.fixture
def audited(tracker: Tracker) -> Tracker:
    """The tracker, with every UPDATE that sets ``jobs.status`` recorded as (old, new)."""
    with tracker.store.database.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE status_changes (old TEXT, new TEXT)"))
        if conn.dialect.name == "sqlite":
            conn.execute(sa.text(SQLITE_AUDIT))
        else:
            for statement in POSTGRES_AUDIT:
                conn.execute(sa.text(statement))
    return tracker


def recorded(store: Store) -> set[tuple[Status, Status]]:
    with store.database.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT old, new FROM status_changes")).all()
    return {(Status(old), Status(new)) for old, new in rows}


def stale(store: Store, job_id: str) -> None:
    """Age a running job's heartbeat far past any timeout."""
    force(store, job_id, heartbeat_at=store.clock() - timedelta(days=1))


def run_every_status_path(tracker: Tracker) -> None:
    """Claims, outcomes, retries, interrupts, cancels, rescues, take-overs and reports."""
    store, runner = tracker.store, Runner.of(tracker.runtime)

    @tracker.job("ok")
    def ok(ctx: Context) -> None: ...

    @tracker.job("flaky", max_attempts=2)
    def flaky(ctx: Context) -> None:
        raise RuntimeError("boom")

    @tracker.job("halves")
    def halves(ctx: Context) -> None:
        for n in ctx.items(range(2)):
            with ctx.item(n):
                if n:
                    raise ValueError(n)

    submitted = [tracker.submit(kind) for kind in ("ok", "flaky", "halves")]
    tracker.cancel(tracker.submit("ok", run_after=store.clock() + timedelta(hours=1)).id)
    with tracker.worker(2, poll_interval=0.01):  # claims, outcomes and a retry
        for job in submitted:
            tracker.wait(job.id, timeout=30)

    # A running job asked to cancel, ending cancelled at its next checkpoint.
    job = tracker.submit("ok")
    [claimed] = store.runs.claim("w", "L1", 1, ["ok"])
    run = runner.hold(claimed.job, claimed.lease)
    tracker.cancel(job.id)
    run.buffer.observe(cancel_requested=True, held=True)
    with pytest.raises(Cancelled) as stopped:
        run.ctx.check()
    assert runner.fail(run.buffer, stopped.value)

    # An interrupted job (not charged), a rescued one, and one lost for good.
    for attempts, lease in ((2, "L2"), (1, "L3")):
        tracker.add(NewJob("ok", max_attempts=attempts))
        [claimed] = store.runs.claim("w", lease, 1, ["ok"])
        stale(store, claimed.job.id)
    assert len(store.expiry.rescue(heartbeat_timeout=60)) == 2
    [claimed] = store.runs.claim("w", "L4", 1, ["ok"])
    runner.interrupt(runner.hold(claimed.job, claimed.lease).buffer, "stopping")

    # Another engine's jobs: taken over queued, and again while running (a redelivery).
    external, _ = tracker.add(NewJob("celery_task"))
    assert store.runs.take_over(external.id, "T1", "a") is not None
    assert store.runs.take_over(external.id, "T2", "b") is not None
    store.runs.finish(external.id, "T2", Status.SUCCEEDED, Progress(100, None, None, None, None),
                      started_at=None)  # fmt: skip

    # Reported jobs: waiting, running, then an outcome.
    reported, _ = tracker.add(NewJob("remote", status=Status.QUEUED))
    for target in (Status.WAITING, Status.RUNNING, Status.SUCCEEDED):
        tracker.report(reported.id, {}, target)


@pytest.mark.timeout(120)
def test_every_status_change_any_statement_makes_is_in_the_transition_table(
    audited: Tracker,
) -> None:
    run_every_status_path(audited)

    seen = recorded(audited.store)
    illegal = {(old, new) for old, new in seen if new not in TRANSITIONS[old]}
    assert illegal == set()
    # The trigger really saw the paths above (so the check above checked something).
    expected = {
        (Status.QUEUED, Status.RUNNING),
        (Status.QUEUED, Status.CANCELLED),
        (Status.QUEUED, Status.WAITING),
        (Status.WAITING, Status.RUNNING),
        (Status.RUNNING, Status.QUEUED),
        (Status.RUNNING, Status.SUCCEEDED),
        (Status.RUNNING, Status.PARTIAL),
        (Status.RUNNING, Status.FAILED),
        (Status.RUNNING, Status.CANCELLED),
    }
    assert expected <= seen


def test_a_take_over_of_a_running_job_rescues_it_first(tracker: Tracker) -> None:
    store = tracker.store
    job, _ = tracker.add(NewJob("celery_task"))
    store.runs.take_over(job.id, "T1", "host:1:a")
    taken = store.runs.take_over(job.id, "T2", "host:2:b")

    assert taken is not None
    assert taken.status is Status.RUNNING
    assert taken.worker == "host:2:b"
    types = [e.type for e in tracker.events(job.id)]
    assert types[-2:] == ["rescued", "started"]
    # The old runner's lease no longer holds the job.
    assert store.runs.heartbeat({job.id: "T1"}) == []
