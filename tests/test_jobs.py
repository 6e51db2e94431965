"""The job vocabulary: statuses, the transition table, priorities and outcomes (no I/O)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from jobtrail import Job, Priority, Status
from jobtrail.states import (
    ACTIVE,
    RETRYABLE,
    TERMINAL,
    TRANSITIONS,
    can_transition,
    outcome,
    sources_of,
)

PAIRS = list(itertools.product(Status, Status))


def test_the_transition_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(Status)


def test_terminal_and_active_states_partition_the_statuses() -> None:
    assert set(Status) == TERMINAL | ACTIVE
    assert not TERMINAL & ACTIVE
    assert {s for s in Status if s.terminal} == TERMINAL


def test_the_terminal_states_are_exactly_those_with_no_way_out() -> None:
    assert {s for s, targets in TRANSITIONS.items() if not targets} == TERMINAL


def test_every_state_is_the_target_of_some_transition() -> None:
    reachable = set().union(*TRANSITIONS.values())
    assert reachable == set(Status)


def test_no_state_transitions_to_itself() -> None:
    assert all(source not in targets for source, targets in TRANSITIONS.items())


def test_retryable_states_are_terminal() -> None:
    assert RETRYABLE <= TERMINAL
    assert Status.SUCCEEDED not in RETRYABLE


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_can_transition_follows_the_table(source: Status, target: Status) -> None:
    assert can_transition(source, target) is (target in TRANSITIONS[source])


@pytest.mark.parametrize("target", list(Status))
def test_sources_of_is_the_inverse_of_the_table(target: Status) -> None:
    assert sources_of(target) == {s for s in Status if target in TRANSITIONS[s]}


def test_the_diagram_in_the_design_is_the_table() -> None:
    assert TRANSITIONS[Status.QUEUED] == {Status.RUNNING, Status.WAITING, Status.CANCELLED}
    assert {Status.RUNNING, Status.QUEUED, Status.CANCELLED} <= TRANSITIONS[Status.WAITING]
    assert TRANSITIONS[Status.RUNNING] >= {Status.QUEUED, Status.WAITING} | TERMINAL


def test_statuses_are_plain_strings() -> None:
    assert Status("partial") is Status.PARTIAL
    assert isinstance(Status.RUNNING, str)
    assert Status.RUNNING.value == "running"
    assert f"{Status.CANCELLED}" == "cancelled"


@pytest.mark.parametrize("priority", list(Priority))
def test_a_priority_survives_its_rank(priority: Priority) -> None:
    assert Priority.from_rank(priority.rank) is priority


def test_higher_priorities_have_higher_ranks() -> None:
    ranks = [p.rank for p in (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT)]
    assert ranks == sorted(set(ranks))


@pytest.mark.parametrize(
    ("succeeded", "failed", "expected"),
    [
        (0, 0, Status.SUCCEEDED),
        (5, 0, Status.SUCCEEDED),
        (4, 1, Status.PARTIAL),
        (1, 4, Status.PARTIAL),
        (0, 3, Status.FAILED),
    ],
)
def test_the_outcome_of_items_is_succeeded_partial_or_failed(
    succeeded: int, failed: int, expected: Status
) -> None:
    assert outcome(succeeded, failed) is expected


def test_a_job_record_is_immutable_and_knows_if_it_is_terminal() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    job = Job(
        id="j1",
        kind="k",
        status=Status.PARTIAL,
        priority=Priority.NORMAL,
        trigger="manual",
        queue="default",
        created_at=now,
        updated_at=now,
        run_after=now,
    )
    assert job.terminal
    with pytest.raises(AttributeError):
        job.status = Status.RUNNING  # type: ignore[misc]
