"""The schema: migrations at open or by the CLI, unknown schemas refused, UTC round trips."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobtrail import Context, SchemaError, Status, StoreUnavailable, Tracker
from jobtrail.filters import Filters
from jobtrail.store import Store
from jobtrail.store.database import create_engine
from jobtrail.store.migrate import current_revision, head_revision
from tests.servers import PostgresServer

JOBTRAIL = Path(sys.executable).with_name("jobtrail")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all: a new SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"empty_{uuid.uuid4().hex[:12]}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def set_revision(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


def revision_of(url: str) -> str | None:
    engine = create_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Refusal:
    found: str | None
    expected: str
    message: str


def refusal(url: str, *, auto_migrate: bool) -> Refusal:
    """What ``SchemaError`` said when a store refused to open ``url``.

    Only its data is kept, and garbage is collected, so that a connection the refused store
    left open is reported (as a ResourceWarning) by the test that made it.
    """
    with pytest.raises(SchemaError) as raised:
        Store(url, auto_migrate=auto_migrate).open()
    error = raised.value
    result = Refusal(error.found, error.expected, str(error))
    del raised, error
    gc.collect()
    return result


def test_a_store_migrates_an_empty_database_when_it_opens(empty_database_url: str) -> None:
    Store(empty_database_url).open().close()
    assert {"jobs", "job_events", "job_items"} <= table_names(empty_database_url)
    assert revision_of(empty_database_url) == head_revision()


def test_without_auto_migrate_a_store_refuses_an_empty_database(empty_database_url: str) -> None:
    refused = refusal(empty_database_url, auto_migrate=False)
    assert refused.found is None
    assert refused.expected == head_revision()
    assert "no jobtrail schema" in refused.message
    assert "jobtrail db upgrade" in refused.message
    assert "jobs" not in table_names(empty_database_url)


def test_a_store_refuses_a_schema_revision_it_does_not_know(database_url: str) -> None:
    Store(database_url).open().close()
    set_revision(database_url, "from_the_future")

    for auto_migrate in (True, False):
        refused = refusal(database_url, auto_migrate=auto_migrate)
        assert refused.found == "from_the_future"
        assert "'from_the_future'" in refused.message
        assert head_revision() in refused.message
    assert revision_of(database_url) == "from_the_future"


def test_a_store_opens_a_database_at_its_own_revision_without_migrating(
    database_url: str,
) -> None:
    Store(database_url).open().close()
    store = Store(database_url, auto_migrate=False)
    try:
        assert store.jobs.find(Filters()).total_count == 0
    finally:
        store.close()


def run_cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": url}
    return subprocess.run(
        [str(JOBTRAIL), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_jobtrail_db_upgrade_migrates_an_empty_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    first = run_cli("db", "upgrade", url=url)

    assert first.returncode == 0, first.stderr
    assert head_revision() in first.stdout
    assert "was empty" in first.stdout
    assert {"jobs", "job_events", "job_items"} <= table_names(url)
    Store(url, auto_migrate=False).open().close()

    again = run_cli("db", "upgrade", url=url)
    assert again.returncode == 0, again.stderr
    assert f"was {head_revision()}" in again.stdout


def test_times_come_back_as_tz_aware_utc(database_url: str) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    run_after = datetime(2030, 3, 1, 9, 30, 15, 250000, tzinfo=india)
    with Tracker(database_url) as tracker:

        @tracker.job("later")
        def later(ctx: Context) -> None: ...

        queued = later.submit(run_after=run_after)
        with tracker.track("now") as ctx:
            with ctx.item("x"):
                raise ValueError("bad")
            ctx.flush()
        stored = tracker.get(queued.id)
        tracked = tracker.get(ctx.job_id)
        event_times = [e.at for e in tracker.events(ctx.job_id)]
        item_times = [i.at for i in tracker.failed_items(ctx.job_id)]

    assert stored.run_after == run_after
    assert stored.run_after == datetime(2030, 3, 1, 4, 0, 15, 250000, tzinfo=UTC)
    assert tracked.status is Status.FAILED
    times = [
        stored.run_after,
        stored.created_at,
        stored.updated_at,
        tracked.started_at,
        tracked.completed_at,
        tracked.heartbeat_at,
        *event_times,
        *item_times,
    ]
    assert all(t is not None and t.utcoffset() == timedelta(0) for t in times), times
    assert all(t is not None and t.tzinfo is UTC for t in times), times


def test_a_naive_datetime_is_refused_with_a_value_error(tracker: Tracker) -> None:
    @tracker.job("later")
    def later(ctx: Context) -> None: ...

    naive = datetime(2030, 1, 1, 12, 0)
    with pytest.raises(ValueError, match="naive"):
        later.submit(run_after=naive)
    with pytest.raises(ValueError, match="naive"):
        tracker.list(created_from=naive)
    assert tracker.list().total_count == 0


def test_the_migrations_build_exactly_the_schema_tables_describes(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from jobtrail.store.tables import metadata

    Store(database_url).open().close()
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    # Alembic cannot compare the claim index's ``priority DESC`` expression on SQLite; that it
    # exists as an ordered index is what test_store's claim-plan test checks.
    claim = [d for d in differences if getattr(d[1], "name", None) == "ix_jobs_claim"]
    assert [d for d in differences if d not in claim] == []
    assert len(claim) in (0, 2)  # nothing, or the remove/add pair of an unreadable expression


def test_a_tracker_connects_to_nothing_until_its_first_use(tmp_path: Path) -> None:
    path = tmp_path / "later.db"
    tracker = Tracker(f"sqlite:///{path}")
    assert not path.exists()  # made, not opened: an import-time Tracker() costs nothing

    assert tracker.list().total_count == 0  # the first use opens and migrates
    assert path.exists()
    tracker.close()


def test_open_meets_a_database_that_cannot_be_reached_at_startup() -> None:
    tracker = Tracker("postgresql://jobtrail:secret-pw@127.0.0.1:1/jobs")  # nothing listens

    with pytest.raises(StoreUnavailable) as refused:
        tracker.open()
    assert "secret-pw" not in str(refused.value)
    with pytest.raises(StoreUnavailable):  # a failed opening is tried again at the next use
        tracker.list()
    tracker.close()


def test_open_refuses_an_outdated_schema_when_migrating_is_off(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    tracker = Tracker(f"sqlite:///{path}", auto_migrate=False)

    with pytest.raises(SchemaError):
        tracker.open()
    tracker.close()
