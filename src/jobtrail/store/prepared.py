"""Prepared statements: SQLAlchemy statements compiled once, run on a raw DBAPI cursor.

The hot paths (status reads, claims, progress flushes, finishes) run thousands of times a
second. SQLAlchemy's per-execution machinery costs more than SQLite itself there, so those
statements are built with SQLAlchemy Core as everywhere else, compiled once per dialect, and
executed directly with the dialect's own type processors for parameters and results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.sql.compiler import SQLCompiler

from jobtrail.exceptions import InvalidData, StoreError

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


@contextmanager
def raw_transaction(engine: Engine, write: bool | None) -> Iterator[RawSession]:
    """A transaction on a raw pooled connection: committed on success, rolled back on error.

    On SQLite a write takes the write lock at BEGIN (as the store's other writes do), and
    ``write=None`` runs without an explicit transaction (one statement is atomic anyway).
    """
    dbapi = engine.dialect.dbapi
    assert dbapi is not None
    try:
        conn = engine.raw_connection()
    except sa.exc.DBAPIError as exc:
        raise StoreError(f"database error: {exc.orig!r}") from exc
    except dbapi.Error as exc:  # a reconnect inside the pool surfaces the driver's own error
        raise StoreError(f"database error: {exc!r}") from exc
    cursor = None
    try:
        cursor = conn.cursor()
        if engine.dialect.name == "sqlite" and write is not None:
            cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        yield RawSession(cursor)
        conn.commit()
    except dbapi.DataError as exc:
        _rollback(conn)
        raise InvalidData(str(exc).splitlines()[0]) from exc
    except dbapi.Error as exc:
        _rollback(conn)
        raise StoreError(f"database error: {exc!r}") from exc
    except BaseException:
        _rollback(conn)
        raise
    finally:
        if cursor is not None:
            cursor.close()
        conn.close()


def _rollback(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # the connection is broken; the pool discards it on close
        conn.invalidate()
