"""A database that is away: its errors name no credential, even in a traceback printed with
its locals, and the loops that keep calling it log the outage once, not once per call."""

from __future__ import annotations

import io
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from rich.traceback import Traceback
from structlog.testing import capture_logs

from jobtrail import StoreError, StoreUnavailable
from jobtrail.store.database import Database
from jobtrail.store.outage import REMIND_SECONDS, Outage
from tests.servers import free_port

PASSWORD = "pw-3f9c1b7e"


@pytest.fixture
def away() -> Iterator[Database]:
    """A PostgreSQL store, with a password in its URL, on a port nobody listens on."""
    database = Database(f"postgresql://jobtrail:{PASSWORD}@127.0.0.1:{free_port()}/jobs")
    try:
        yield database
    finally:
        database.close()


def raised(database: Database) -> StoreError:
    with pytest.raises(StoreError) as caught, database.read() as conn:
        conn.exec_driver_sql("SELECT 1")
    return caught.value


def test_an_unreachable_database_is_unavailable_and_its_error_names_no_password(
    away: Database,
) -> None:
    error = raised(away)

    assert isinstance(error, StoreUnavailable)
    assert "Connection refused" in error.reason
    shown = traceback.TracebackException.from_exception(error, capture_locals=True)
    printed = "".join(shown.format())
    assert "Connection refused" in printed  # the driver's error is chained...
    assert PASSWORD not in printed  # ...without the frames whose locals hold the password
    assert "password" not in printed


def test_a_traceback_printed_by_rich_with_its_locals_names_no_password(away: Database) -> None:
    # What structlog's ConsoleRenderer prints by default where rich is installed.
    error = raised(away)
    shown = Traceback.from_exception(type(error), error, error.__traceback__, show_locals=True)
    out = io.StringIO()
    Console(file=out, width=200).print(shown)
    printed = out.getvalue()

    assert "StoreUnavailable" in printed
    assert "OperationalError" in printed
    assert PASSWORD not in printed


def test_an_error_the_caller_was_handling_keeps_its_traceback(away: Database) -> None:
    try:
        raise RuntimeError("the caller's own")
    except RuntimeError as exc:
        handled = exc
        error = raised(away)

    chained: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None:
        chained.append(seen)
        seen = seen.__cause__ or seen.__context__
    drivers = chained[1 : chained.index(handled)]
    assert drivers
    assert all(e.__traceback__ is None for e in drivers)
    assert handled.__traceback__ is not None  # a bare ``raise`` in that block shows where


def test_a_url_that_cannot_be_parsed_is_refused_without_its_password() -> None:
    with pytest.raises(StoreError, match="not a database URL") as caught:
        Database(f"jobtrail:{PASSWORD}@nowhere/jobs")

    assert PASSWORD not in str(caught.value)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_logged_when_it_begins_every_minute_it_lasts_and_when_it_ends() -> None:
    clock = Clock()
    outage = Outage(clock)
    down = StoreUnavailable("connection refused")
    with capture_logs() as logs:
        for _ in range(500):  # five seconds of claims, heartbeats and maintenance
            assert outage.noted(down, "claim")
            clock.now += 0.01
        clock.now += REMIND_SECONDS
        assert outage.noted(down, "heartbeat")
        outage.ended()
        outage.ended()

    assert [line["event"] for line in logs] == [
        "database unavailable; calls are retried quietly until it answers",
        "database still unavailable",
        "database available again",
    ]
    assert logs[0]["error"] == "connection refused"
    assert logs[0]["during"] == "claim"
    assert logs[1]["failures"] == 501
    assert logs[2]["seconds"] == 65.0
    assert not outage.ongoing


def test_any_other_store_error_is_left_to_its_caller_to_log() -> None:
    outage = Outage()
    with capture_logs() as logs:
        assert not outage.noted(StoreError("database error: a bug"), "claim")
        outage.ended()

    assert logs == []
    assert not outage.ongoing


def test_a_store_call_that_succeeds_ends_the_outage(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        database.outage.noted(StoreUnavailable("gone"), "claim")
        with capture_logs() as logs, database.read() as conn:
            conn.exec_driver_sql("SELECT 1")
    finally:
        database.close()

    assert [line["event"] for line in logs] == ["database available again"]
    assert not database.outage.ongoing
