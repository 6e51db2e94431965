"""The hot statements (status reads, claims, flushes, finishes), compiled once, run raw.

They run thousands of times a second, and SQLAlchemy's per-execution machinery costs more
than SQLite itself there, so they are built with SQLAlchemy Core as everywhere else, compiled
once per dialect, and executed on a raw DBAPI cursor with the dialect's own type processors.
``Prepared`` reads three compiler attributes (``positional``/``positiontup``, ``binds``, and
the types' ``bind_processor``/``result_processor``); SQLAlchemy is pinned to a minor series in
``pyproject.toml`` and ``tests/test_statements.py`` checks every statement against
SQLAlchemy's own execution, so an upgrade that changes them fails a test, not a job.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from jobtrail.jobs import NewEvent, NewFailedItem, Progress
from jobtrail.states import HELD, TERMINAL, Status, sources_of
from jobtrail.store.rows import JOB_COLUMNS, event_row, item_row, progress_columns
from jobtrail.store.tables import job_events, job_items, job_labels, jobs, tokens

Processor = Callable[[Any], Any] | None


def param(column: sa.Column[Any], name: str | None = None) -> sa.BindParameter[Any]:
    """A named parameter typed like ``column`` (so it gets the column's conversions)."""
    return sa.bindparam(name or column.name, type_=column.type)


class Prepared:
    """One statement, compiled for one dialect, with its parameter and result conversions."""

    def __init__(
        self,
        statement: sa.ClauseElement,
        dialect: Dialect,
        returns: Sequence[sa.Column[Any]] = (),
    ) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql = compiled.string
        self._positional = bool(compiled.positional)
        names: list[str] = list(compiled.positiontup or []) if self._positional else []
        if not self._positional:
            names = list(compiled.binds)
        # A parameter without a caller-given value is a constant of the statement.
        self._binds: list[tuple[str, Processor, Any]] = [
            (n, _bind_processor(compiled.binds[n].type, dialect), compiled.binds[n].value)
            for n in names
        ]
        self.columns = [c.name for c in returns]
        self._returns = list(returns)
        self._dialect = dialect
        self._results: list[Processor] | None = None  # known from the first result's types

    def params(self, values: Mapping[str, Any]) -> Any:
        """The DBAPI parameters for ``values`` (converted, in the driver's style)."""
        converted = []
        for name, process, constant in self._binds:
            value = values.get(name, constant)
            converted.append((name, process(value) if process else value))
        if self._positional:
            return tuple(v for _, v in converted)
        return dict(converted)

    def rows(self, cursor: Any) -> list[dict[str, Any]]:
        """The cursor's rows as ``{column: value}`` with the columns' conversions applied."""
        if self._results is None:
            # Result conversions may depend on the driver's type codes, as in SQLAlchemy.
            self._results = [
                c.type.dialect_impl(self._dialect).result_processor(self._dialect, d[1])
                for c, d in zip(self._returns, cursor.description, strict=True)
            ]
        results = self._results
        return [
            {
                name: (p(v) if p else v)
                for name, p, v in zip(self.columns, results, raw, strict=True)
            }
            for raw in cursor.fetchall()
        ]


def _bind_processor(type_: sa.types.TypeEngine[Any], dialect: Dialect) -> Processor:
    return type_.dialect_impl(dialect).bind_processor(dialect)


class RawSession:
    """A cursor inside one transaction on a pooled raw connection."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def execute(self, prepared: Prepared, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run ``prepared``; its RETURNING/SELECT rows, converted."""
        self.cursor.execute(prepared.sql, prepared.params(values))
        if not prepared.columns:
            return []
        return prepared.rows(self.cursor)

    def rowcount(self, prepared: Prepared, values: Mapping[str, Any]) -> int:
        """Run ``prepared``; how many rows it changed."""
        self.cursor.execute(prepared.sql, prepared.params(values))
        return int(self.cursor.rowcount)

    def execute_many(self, prepared: Prepared, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run ``prepared`` once per row of parameters."""
        if rows:
            self.cursor.executemany(prepared.sql, [prepared.params(r) for r in rows])


c = jobs.c
PROGRESS_COLUMNS: tuple[str, ...] = (
    "progress",
    "message",
    "items_total",
    "items_done",
    "items_succeeded",
    "items_failed",
    "progress_data",
    "stage",
)


def status_in(statuses: Collection[Status]) -> sa.ColumnElement[bool]:
    """``status IN (...)`` as constants ORed together, so a prepared statement needs no
    expanding parameter."""
    return sa.or_(*(c.status == s.value for s in sorted(statuses)))


def _progress_values(now: sa.BindParameter[Any]) -> dict[str, Any]:
    values: dict[str, Any] = {name: param(c[name]) for name in PROGRESS_COLUMNS}
    # A flush that moved progress clears the stalled flag; one that did not leaves it.
    values["stalled"] = sa.case((param(c.stalled, "moved"), sa.false()), else_=c.stalled)
    values["updated_at"] = now
    return values


def progress_params(progress: Progress) -> dict[str, Any]:
    """The parameters of a progress snapshot for the prepared statements."""
    values = progress_columns(progress)
    values.pop("stalled", None)
    values["moved"] = progress.moved
    return values


def _due(kinds: int, queues: int) -> list[sa.ColumnElement[bool]]:
    """The conditions of a job a worker may claim now: queued, due, of one of its ``kinds``
    (parameters ``kind_0``…) and, given ``queues``, in one of them (``queue_0``…)."""
    due = [
        status_in(sources_of(Status.RUNNING, among={Status.QUEUED})),
        c.run_after <= param(c.updated_at, "now"),
        sa.or_(*(c.kind == param(c.kind, f"kind_{i}") for i in range(kinds))),
    ]
    if queues:
        due.append(sa.or_(*(c.queue == param(c.queue, f"queue_{i}") for i in range(queues))))
    return due


class Statements:
    """The hot statements for one dialect (a store builds them once)."""

    def __init__(self, dialect: Dialect, beat_now: Callable[[Any], Any]) -> None:
        """``beat_now(now)``: the heartbeat clock (the database's own on PostgreSQL)."""
        self.dialect = dialect
        now = param(c.updated_at, "now")
        self.beat_now = beat_now
        key = (c.id == param(c.id), c.lease == param(c.lease))
        self.get = Prepared(
            sa.select(*JOB_COLUMNS).where(c.id == param(c.id)), dialect, JOB_COLUMNS
        )
        self.flush = Prepared(
            jobs.update()
            .where(*key, status_in(HELD))
            .values(**_progress_values(now), heartbeat_at=beat_now(now))
            .returning(c.cancel_requested),
            dialect,
            [c.cancel_requested],
        )
        self.finish = {
            status: Prepared(
                jobs.update()
                .where(*key, status_in(sources_of(status, among=HELD)))
                .values(
                    **_progress_values(now),
                    status=status.value,
                    result=param(c.result),
                    error_message=param(c.error_message),
                    error_details=param(c.error_details),
                    completed_at=now,
                    duration_seconds=param(c.duration_seconds),
                ),
                dialect,
            )
            for status in TERMINAL
        }
        # The last resort of an outcome the database refused (``RunStore.finish``): failed
        # with the reason, leaving the columns it could not write as the last flush left them.
        self.refuse = Prepared(
            jobs.update()
            .where(*key, status_in(sources_of(Status.FAILED, among=HELD)))
            .values(
                status=Status.FAILED.value,
                result=sa.null(),
                error_message=param(c.error_message),
                error_details=sa.null(),
                completed_at=now,
                updated_at=now,
                duration_seconds=param(c.duration_seconds),
            ),
            dialect,
        )
        self.event = Prepared(
            job_events.insert().values(
                {col: param(col) for col in job_events.c if col.name != "id"}
            ),
            dialect,
        )
        self.item = Prepared(
            job_items.insert().values({col: param(col) for col in job_items.c if col.name != "id"}),
            dialect,
        )
        self.token = Prepared(
            sa.select(
                tokens.c.name, tokens.c.owner, tokens.c.created_at, tokens.c.revoked_at
            ).where(
                tokens.c.token_hash == param(tokens.c.token_hash), tokens.c.revoked_at.is_(None)
            ),
            dialect,
            [tokens.c.name, tokens.c.owner, tokens.c.created_at, tokens.c.revoked_at],
        )
        # Submits: a new row (none when its owner's key exists), its labels, a keyed read.
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        new_job = insert(jobs).values({col: param(col) for col in jobs.c})
        self.insert_jobs = Prepared(new_job, dialect)
        self.insert_keyed_job = Prepared(
            new_job.on_conflict_do_nothing(index_elements=["key_scope", "key"]).returning(c.id),
            dialect,
            [c.id],
        )
        self.label = Prepared(
            job_labels.insert().values({col: param(col) for col in job_labels.c}), dialect
        )
        self.by_key = Prepared(
            sa.select(*JOB_COLUMNS).where(c.key_scope == param(c.key_scope), c.key == param(c.key)),
            dialect,
            JOB_COLUMNS,
        )
        self.forget_items = Prepared(
            job_items.delete().where(job_items.c.job_id == param(job_items.c.job_id)), dialect
        )
        self._claims: dict[tuple[int, int], Prepared] = {}

    def claim(self, kinds: int, queues: int) -> Prepared:
        """The claim statement for ``kinds`` kind names and ``queues`` queue names (0: any)."""
        shape = (kinds, queues)
        if shape not in self._claims:
            self._claims[shape] = self._build_claim(kinds, queues)
        return self._claims[shape]

    def any_due(self, kinds: int, queues: int) -> Prepared:
        """Whether a job ``claim`` would take is due (a read: idle workers ask it when another
        process committed, and claim only when it finds one)."""
        shape = (-kinds, queues)
        if shape not in self._claims:
            found = sa.select(c.id).where(*_due(kinds, queues)).limit(1)
            self._claims[shape] = Prepared(found, self.dialect, [c.id])
        return self._claims[shape]

    def _build_claim(self, kinds: int, queues: int) -> Prepared:
        now = param(c.updated_at, "now")
        due = _due(kinds, queues)
        pick = (
            sa.select(c.id)
            .where(*due)
            .order_by(c.priority.desc(), c.run_after)
            .limit(sa.bindparam("limit", type_=sa.Integer()))
        )
        if self.dialect.name == "postgresql":
            # Lock the picked rows once in a materialized CTE: as ``IN (subquery)`` the
            # planner may re-run the LIMITed subquery per row and claim more than asked.
            picked = pick.with_for_update(skip_locked=True).cte("picked")
            picked = picked.prefix_with("MATERIALIZED")
            # The locked rows were re-checked as queued under the lock, so the join needs
            # only the primary key (an extra status filter misleads the planner).
            chosen: sa.ColumnElement[bool] = c.id == picked.c.id
        else:
            chosen = sa.and_(c.id.in_(pick.scalar_subquery()), due[0])
        stmt = (
            jobs.update()
            .where(chosen)
            .values(
                status=Status.RUNNING.value,
                attempt=c.attempt + 1,
                started_at=now,
                heartbeat_at=self.beat_now(now),
                updated_at=now,
                worker=param(c.worker),
                lease=param(c.lease),
                cancel_requested=False,
                stalled=False,
                progress=0.0,
                message=None,
                stage=None,
                items_done=None,
                items_succeeded=None,
                items_failed=None,
            )
            .returning(*JOB_COLUMNS)
        )
        return Prepared(stmt, self.dialect, JOB_COLUMNS)

    def append(
        self,
        session: RawSession,
        at: datetime,
        events: Collection[tuple[str, NewEvent]] = (),
        items: Collection[tuple[str, NewFailedItem]] = (),
    ) -> None:
        """Insert events and failed items of any jobs, one batch each."""
        session.execute_many(self.event, [event_row(job_id, at, e) for job_id, e in events])
        session.execute_many(self.item, [item_row(job_id, at, i) for job_id, i in items])
