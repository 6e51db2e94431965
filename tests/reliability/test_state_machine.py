"""A hypothesis state machine over the public Python API (submit, external jobs and their
reports, cancel, retry, worker bursts, purge), on SQLite and PostgreSQL: terminal states never
change, timestamps never go back, counts are never negative."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from jobtrail import Context, Job, JobNotFound, JobtrailError, Priority, Status, Tracker
from jobtrail.jobs import NewJob
from jobtrail.states import TERMINAL
from tests.reliability.harness import budget, scaled

TERMINAL_EVENTS = {s.value for s in TERMINAL}
text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)
counts = st.none() | st.integers(min_value=0, max_value=20)


def register_kinds(tracker: Tracker) -> Tracker:
    """Kinds whose outcomes cover every terminal state a worker decides."""

    @tracker.job("ok")
    def ok(ctx: Context, items: int = 3) -> int:
        for n in ctx.items(range(items)):
            with ctx.item(n):
                ctx.progress(message=f"item {n}")
        return items

    @tracker.job("mixed")
    def mixed(ctx: Context, items: int = 4) -> None:
        for n in ctx.items(range(items)):
            with ctx.item(n):
                if n % 2:
                    raise ValueError(f"item {n} is odd")

    @tracker.job("flaky", max_attempts=2, retry_backoff=0.001)
    def flaky(ctx: Context, fail_until: int = 2) -> int:
        if ctx.attempt < fail_until:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return ctx.attempt

    return tracker


class JobLives(RuleBasedStateMachine):
    """Random sequences of what callers and workers do to jobs, checked after every step."""

    database_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.tracker = register_kinds(Tracker(self.database_url, flush_interval=0.0))
        self.seen: dict[str, Job] = {}
        self.ended: dict[str, Job] = {}
        self.purged: set[str] = set()
        self.known: list[str] = []

    jobs = Bundle("jobs")
    external = Bundle("external")

    @rule(
        target=jobs,
        kind=st.sampled_from(["ok", "mixed", "flaky"]),
        priority=st.sampled_from(list(Priority)),
        items=st.integers(min_value=0, max_value=5),
    )
    def submit(self, kind: str, priority: Priority, items: int) -> str:
        payload: dict[str, Any] = {"fail_until": items % 4} if kind == "flaky" else {"items": items}
        return self.made(self.tracker.submit(kind, payload, priority=priority))

    @rule(target=external, status=st.sampled_from(["queued", "waiting", "running"]), total=counts)
    def add_external(self, status: str, total: int | None) -> str:
        new = NewJob(kind="elsewhere", status=Status(status), items_total=total)
        return self.made(self.tracker.add(new)[0])

    @rule(
        job_id=external,
        progress=st.none() | st.floats(min_value=0, max_value=100),
        message=st.none() | text,
        succeeded=counts,
        failed=counts,
        status=st.none() | st.sampled_from(list(Status)),
    )
    def report(
        self,
        job_id: str,
        progress: float | None,
        message: str | None,
        succeeded: int | None,
        failed: int | None,
        status: Status | None,
    ) -> None:
        values = {"progress": progress, "message": message}
        values |= {"items_succeeded": succeeded, "items_failed": failed}
        self.attempt(lambda: self.tracker.report(job_id, values, status))

    @rule(job_id=jobs | external)
    def cancel(self, job_id: str) -> None:
        self.attempt(lambda: self.tracker.cancel(job_id))

    @rule(target=jobs, job_id=jobs, only_failed_items=st.booleans())
    def retry(self, job_id: str, only_failed_items: bool) -> Any:
        try:
            return self.made(self.tracker.retry(job_id, only_failed_items=only_failed_items))
        except JobtrailError:
            return multiple()

    @rule()
    def run_a_worker_burst(self) -> None:
        self.tracker.worker(2, poll_interval=0.01, grace_period=5).run(burst=True)

    @rule(everything=st.booleans())
    def purge(self, everything: bool) -> None:
        age = 0.0 if everything else 1.0
        self.tracker.purge(succeeded_days=age, other_days=age, max_days=age)

    def made(self, job: Job) -> str:
        """Remember a job this machine made, to check it after every step."""
        self.known.append(job.id)
        return job.id

    def attempt(self, change: Any) -> None:
        """Make a change the state machine may refuse (a refusal is a ``JobtrailError``)."""
        with contextlib.suppress(JobtrailError):
            change()

    @invariant()
    def records_stay_sound(self) -> None:
        for job_id in self.known:
            if job_id in self.purged:
                continue
            try:
                job = self.tracker.get(job_id)
            except JobNotFound:
                assert job_id in self.ended, f"{job_id} vanished while {self.seen.get(job_id)}"
                self.purged.add(job_id)
                continue
            self._check(job)
            self.seen[job_id] = job
            if job.terminal:
                self.ended.setdefault(job_id, job)

    @invariant()
    def statistics_are_never_negative(self) -> None:
        stats = self.tracker.stats(days=1)
        assert stats.total_jobs >= 0
        assert stats.active_jobs >= 0
        assert all(n >= 0 for n in stats.jobs_by_status.values()), stats
        assert all(n >= 0 for n in stats.jobs_by_kind.values()), stats
        assert stats.total_processing_seconds >= 0

    def _check(self, job: Job) -> None:
        before = self.seen.get(job.id)
        if job.id in self.ended:
            assert job == self.ended[job.id], (
                f"a terminal job changed: {self.ended[job.id]} → {job}"
            )
        assert job.created_at <= job.updated_at
        if job.started_at is not None:
            assert job.created_at <= job.started_at <= job.updated_at
        if job.completed_at is not None:
            assert (job.started_at or job.created_at) <= job.completed_at <= job.updated_at
        assert job.terminal == (job.completed_at is not None), job
        if before is not None:
            assert job.updated_at >= before.updated_at, "updated_at went back"
            assert job.created_at == before.created_at
        for count in (job.items_total, job.items_done, job.items_succeeded, job.items_failed):
            assert count is None or count >= 0, job
        assert 0 <= job.progress <= 100, job
        assert 0 <= job.attempt <= job.max_attempts, job
        assert job.duration_seconds is None or job.duration_seconds >= 0, job
        events = self.tracker.events(job.id)
        assert [e.at for e in events] == sorted(e.at for e in events), "events went back in time"
        ends = [e.type for e in events if e.type in TERMINAL_EVENTS]
        assert ends == ([job.status.value] if job.terminal else []), (job.status, ends)

    def teardown(self) -> None:
        self.tracker.close()


@pytest.mark.timeout(budget(400))
def test_the_public_api_never_changes_a_terminal_state_nor_turns_back_time_or_counts(
    database_url: str,
) -> None:
    JobLives.database_url = database_url
    run_state_machine_as_test(
        JobLives,
        settings=settings(
            max_examples=scaled(25),
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
