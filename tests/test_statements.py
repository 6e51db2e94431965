"""The prepared hot statements agree with SQLAlchemy's own execution of the same statements.

``Prepared`` reads SQLAlchemy compiler internals (bind order, bind and result processors); an
upgrade that changes them must fail here, on both dialects, not in a job.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler

from jobtrail import Tracker
from jobtrail.jobs import NewEvent, NewFailedItem, NewJob, Progress
from jobtrail.states import EventType, Priority, Status
from jobtrail.store import Store
from jobtrail.store.rows import JOB_COLUMNS, new_row
from jobtrail.store.statements import Prepared, Statements
from jobtrail.store.tables import job_events, job_items, job_labels, jobs


def statements(store: Store) -> Statements:
    database = store.database
    return Statements(database.engine.dialect, database.heartbeat_clock)


def core_row(store: Store, job_id: str) -> dict[str, Any]:
    """The job's row as SQLAlchemy itself reads it."""
    with store.database.engine.connect() as conn:
        stmt = sa.select(*JOB_COLUMNS).where(jobs.c.id == job_id)
        return dict(conn.execute(stmt).mappings().one())


def rich_job(store: Store) -> str:
    """A job whose row exercises every column type: JSON, tz-aware times, booleans, floats."""
    new = NewJob(
        kind="k",
        payload={"nested": {"list": [1, 2.5, None, True]}, "text": "é ✓"},
        key="key-1",
        owner="o",
        priority=Priority.HIGH,
        labels={"team": "data"},
        timeout=1.5,
        run_after=datetime(2030, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC),
    )
    return store.jobs.add([new])[0].id


def test_the_compiler_attributes_prepared_relies_on_are_there(tracker: Tracker) -> None:
    dialect = tracker.store.database.engine.dialect
    compiled = sa.select(jobs.c.id).where(jobs.c.id == sa.bindparam("id")).compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    assert "id" in compiled.binds
    if compiled.positional:
        assert list(compiled.positiontup or []) == ["id"]
    bind_type = compiled.binds["id"].type.dialect_impl(dialect)
    assert callable(getattr(bind_type, "bind_processor", None))
    assert callable(getattr(bind_type, "result_processor", None))


def test_a_prepared_read_returns_what_sqlalchemy_returns(tracker: Tracker) -> None:
    store = tracker.store
    job_id = rich_job(store)
    with store.database.raw(write=None) as session:
        [prepared] = session.execute(statements(store).get, {"id": job_id})

    assert prepared == core_row(store, job_id)
    assert prepared["run_after"] == datetime(2030, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    assert prepared["payload"]["nested"] == {"list": [1, 2.5, None, True]}
    assert prepared["cancel_requested"] is False


def test_prepared_writes_convert_parameters_as_sqlalchemy_does(tracker: Tracker) -> None:
    store = tracker.store
    hot = statements(store)
    job_id = rich_job(store)
    at = datetime(2030, 5, 6, 7, 8, 9, 123_000, tzinfo=UTC)
    event = NewEvent(EventType.LOG, "note", {"k": ["v", 1]}, "ops")
    item = NewFailedItem("item-1", "ValueError", "bad")
    with store.database.raw(write=True) as session:
        hot.append(session, at, [(job_id, event)], [(job_id, item)])

    with store.database.engine.connect() as conn:
        stored = conn.execute(
            sa.select(job_events).where(job_events.c.job_id == job_id, job_events.c.type == "log")
        ).one()
        failed = conn.execute(sa.select(job_items).where(job_items.c.job_id == job_id)).one()
    assert (stored.at, stored.message, stored.data, stored.actor) == (at, "note", event.data, "ops")
    assert (failed.item_id, failed.error_type, failed.message, failed.at) == (
        "item-1",
        "ValueError",
        "bad",
        at,
    )


def test_a_prepared_claim_and_flush_agree_with_the_row_sqlalchemy_reads(tracker: Tracker) -> None:
    store = tracker.store
    job_id = rich_job(store)
    later = datetime(2031, 1, 1, tzinfo=UTC)
    hot = statements(store)
    values = {"now": later, "limit": 5, "worker": "w", "lease": "L", "kind_0": "k"}
    with store.database.raw(write=True) as session:
        [claimed] = session.execute(hot.claim(1, 0), values)
    row = core_row(store, job_id)
    assert claimed == row
    assert row["status"] == Status.RUNNING.value
    assert row["started_at"] == later

    flush: dict[str, Any] = {"id": job_id, "lease": "L", "now": later + timedelta(seconds=1)}
    flush |= {"progress": 40.0, "message": "m", "items_total": 5, "items_done": 2}
    flush |= {"items_succeeded": 2, "items_failed": 0, "progress_data": {"a": 1}, "moved": True}
    with store.database.raw(write=True) as session:
        answer = session.execute(hot.flush, flush)
    assert answer == [{"cancel_requested": False}]
    row = core_row(store, job_id)
    assert (row["progress"], row["progress_data"], row["updated_at"]) == (
        40.0,
        {"a": 1},
        later + timedelta(seconds=1),
    )


def test_a_constant_of_a_statement_is_sent_when_no_value_is_given(tracker: Tracker) -> None:
    dialect = tracker.store.database.engine.dialect
    stmt = sa.select(jobs.c.id).where(jobs.c.kind == sa.bindparam("kind", "fixed"))
    prepared = Prepared(stmt, dialect, [jobs.c.id])
    params = prepared.params({})
    assert list(params.values() if isinstance(params, dict) else params) == ["fixed"]
    progress = Progress(1.0, None, None, None, None)
    assert progress.items_done is None


def test_a_prepared_submit_stores_the_row_sqlalchemy_would(tracker: Tracker) -> None:
    store = tracker.store
    via_prepared = rich_job(store)
    twin = NewJob(kind="k", payload={"nested": {"list": [1, 2.5, None, True]}, "text": "é ✓"})
    row = new_row(twin, core_row(store, via_prepared)["created_at"])
    fields = ("key", "owner", "priority", "labels", "timeout", "run_after")
    row |= {f: core_row(store, via_prepared)[f] for f in fields} | {"key": "key-2"}
    row["key_scope"] = "o"
    with store.database.engine.begin() as conn:
        conn.execute(jobs.insert(), row)

    def comparable(job_id: str) -> dict[str, Any]:
        return {k: v for k, v in core_row(store, job_id).items() if k not in ("id", "key")}

    assert comparable(via_prepared) == comparable(row["id"])
    assert core_row(store, via_prepared)["labels"] == {"team": "data"}
    with store.database.engine.connect() as conn:
        labels = conn.execute(sa.select(job_labels).where(job_labels.c.job_id == via_prepared))
        assert [(r.key, r.value) for r in labels] == [("team", "data")]
