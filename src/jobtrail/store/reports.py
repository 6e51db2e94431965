"""Reports: the item counts a report for an external job sets or adds to, as job columns
(increments as SQL, so concurrent reporters never lose a count)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from jobtrail.exceptions import InvalidData
from jobtrail.jobs import Job
from jobtrail.store.tables import jobs

INCREMENTS = {
    "advance": "items_succeeded",
    "succeeded_delta": "items_succeeded",
    "failed_delta": "items_failed",
}
"""Report fields that add to a count rather than set it (``advance`` is ``ctx.advance``'s)."""
COUNTS = ("items_total", "items_succeeded", "items_failed", "items_done")


def counted(values: Mapping[str, Any], job: Job) -> dict[str, Any]:
    """``values`` as job columns: increments become ``COALESCE(column, 0) + n``, ``items_done``
    (and, with a known total, the percentage) follows from the counts.

    ``job`` is the row as locked by the report, so the resulting counts are known here:
    ``InvalidData`` if they add up past the total, if an increment is negative, or if one
    count is both set and incremented.
    """
    values = dict(values)
    added = _increments(values)
    if "items_done" in values:
        _done_as_succeeded(values, added, job)
    if not added and not any(name in values for name in COUNTS):
        return values
    succeeded = _resulting(values, added, job, "items_succeeded")
    failed = _resulting(values, added, job, "items_failed")
    total = values.get("items_total", job.items_total)
    if total is not None and succeeded + failed > total:
        raise InvalidData(
            f"items_succeeded + items_failed ({succeeded} + {failed}) exceeds items_total ({total})"
        )
    changed = {"items_succeeded", "items_failed"} & (set(values) | set(added))
    if not changed:
        return values
    for column, n in added.items():
        values[column] = sa.func.coalesce(jobs.c[column], 0) + n
    values["items_done"] = _column(values, "items_succeeded") + _column(values, "items_failed")
    if "progress" not in values and total:
        values["progress"] = min((succeeded + failed) * 100.0 / total, 100.0)
    return values


def _increments(values: dict[str, Any]) -> dict[str, int]:
    """The increments in ``values`` (removed from it), summed per count column."""
    added: dict[str, int] = {}
    for name, column in INCREMENTS.items():
        n = values.pop(name, None)
        if n is None:
            continue
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidData(f"{name} must be a whole number of at least 0, not {n!r}")
        if column in values:
            raise InvalidData(f"{column} is set and {name} adds to it: report one of them")
        added[column] = added.get(column, 0) + n
    return added


def _done_as_succeeded(values: dict[str, Any], added: dict[str, int], job: Job) -> None:
    """Replace ``items_done`` by the succeeded count it implies (done − failed)."""
    done = values.pop("items_done")
    if "items_succeeded" in values or "items_succeeded" in added:
        raise InvalidData("items_done is items_succeeded + items_failed: report one of them")
    failed = _resulting(values, added, job, "items_failed")
    if done < failed:
        raise InvalidData(f"items_done ({done}) is less than items_failed ({failed})")
    values["items_succeeded"] = done - failed


def _resulting(values: Mapping[str, Any], added: Mapping[str, int], job: Job, column: str) -> int:
    """The count ``column`` has once the report is applied to the locked ``job``."""
    stored: int = getattr(job, column) or 0
    reported = values.get(column)
    return int(reported) if reported is not None else stored + added.get(column, 0)


def _column(values: Mapping[str, Any], column: str) -> Any:
    """What ``column`` is set to (a value or an expression), or its SQL value when unreported."""
    if column in values:
        value = values[column]
        return value if isinstance(value, sa.ColumnElement) else sa.literal(value)
    return sa.func.coalesce(jobs.c[column], 0)
