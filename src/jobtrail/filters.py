"""Filters: what a job listing, a change feed or a statistic is restricted to (values only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict, Unpack

from jobtrail.exceptions import TooManyFilters
from jobtrail.jobs import JSON
from jobtrail.states import Priority, Status

MAX_LABEL_FILTERS = 20
"""The most label filters one listing, statistic or stream takes (a clear refusal past it,
so no caller can make the database plan a query of hundreds of conditions)."""


class FilterOptions(TypedDict, total=False):
    """What ``Tracker.list`` (and ``GET /jobs``) can filter on; every filter is optional."""

    owner: str | None
    status: Status | str | Sequence[Status | str] | None
    kind: str | None
    priority: Priority | str | None
    trigger: str | None
    created_from: datetime | None
    created_to: datetime | None
    q: str | None
    labels: Mapping[str, JSON] | None


@dataclass(frozen=True, slots=True)
class Filters:
    """What a job listing or change feed is restricted to; every field is optional."""

    owner: str | None = None
    statuses: Sequence[Status] = ()
    kind: str | None = None
    priority: Priority | None = None
    trigger: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    q: str | None = None
    labels: Mapping[str, JSON] = field(default_factory=dict)
    """Jobs having every one of these labels (scalar values, compared as ``label_text``)."""
    nothing: bool = False
    """Match no job at all (e.g. a filter on an owner the caller may not see)."""

    def __post_init__(self) -> None:
        if len(self.labels) > MAX_LABEL_FILTERS:
            raise TooManyFilters(len(self.labels), MAX_LABEL_FILTERS)

    @classmethod
    def of(cls, **options: Unpack[FilterOptions]) -> Filters:
        """Filters from loosely typed values (names of statuses and priorities accepted);
        a naive ``created_from``/``created_to`` is a ``ValueError``."""
        for name in ("created_from", "created_to"):
            moment = options.get(name)
            if isinstance(moment, datetime) and moment.tzinfo is None:
                raise ValueError(f"{name} is a naive datetime; give it a time zone")
        status = options.get("status")
        statuses = [status] if isinstance(status, str) else list(status or [])
        priority = options.get("priority")
        labels = dict(options.get("labels") or {})
        for key, value in labels.items():
            if not isinstance(value, str | int | float | bool):
                raise ValueError(f"label {key!r}: only text, numbers and booleans are filterable")
        return cls(
            owner=options.get("owner"),
            statuses=[Status(s) for s in statuses],
            kind=options.get("kind"),
            priority=None if priority is None else Priority(priority),
            trigger=options.get("trigger"),
            created_from=options.get("created_from"),
            created_to=options.get("created_to"),
            q=options.get("q"),
            labels=labels,
        )
