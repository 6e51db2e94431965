"""Filters as SQL: the WHERE clauses of job listings, change feeds and statistics, each
served by an index (``tests/test_store.py`` and ``tests/test_labels.py`` read the plans)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from jobtrail.filters import Filters
from jobtrail.states import Status
from jobtrail.store.rows import label_text
from jobtrail.store.tables import job_labels, jobs


def listing_conditions(filters: Filters) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses for ``filters``; each listing they make is served by an index."""
    c = jobs.c
    conditions: list[sa.ColumnElement[bool]] = []
    if filters.nothing:
        conditions.append(sa.false())
    if filters.owner is not None:
        conditions.append(c.owner == filters.owner)
    if filters.statuses:
        conditions.append(c.status.in_([Status(s).value for s in filters.statuses]))
    if filters.kind is not None:
        conditions.append(c.kind == filters.kind)
    if filters.priority is not None:
        conditions.append(c.priority == filters.priority.rank)
    if filters.trigger is not None:
        conditions.append(c.trigger == filters.trigger)
    if filters.created_from is not None:
        conditions.append(c.created_at >= filters.created_from)
    if filters.created_to is not None:
        conditions.append(c.created_at < filters.created_to)
    conditions += label_conditions(filters.labels)
    if filters.q:
        pattern = "%" + _escape_like(filters.q) + "%"
        conditions.append(
            sa.or_(
                c.id.like(_escape_like(filters.q) + "%", escape="\\"),  # an id or its prefix
                c.key == filters.q,
                c.message.like(pattern, escape="\\"),
            )
        )
    return conditions


def label_conditions(labels: Mapping[str, Any]) -> list[sa.ColumnElement[bool]]:
    """The condition of jobs having every one of ``labels``, if any are given."""
    return [has_labels(labels)] if labels else []


def has_labels(labels: Mapping[str, Any]) -> sa.ColumnElement[bool]:
    """Jobs having every one of ``labels`` (values compared as ``label_text``), read from the
    ``(key, value, job_id)`` index of ``job_labels``.

    One subquery, whatever the number of labels: the jobs with any of the pairs, grouped, kept
    when they have all. (A subquery per label made PostgreSQL's planner weigh every order of
    joining them: 200 labels took 51 s to plan.)"""
    pairs = [
        sa.and_(job_labels.c.key == key, job_labels.c.value == label_text(value))
        for key, value in labels.items()
    ]
    labelled = sa.select(job_labels.c.job_id).where(sa.or_(*pairs))
    if len(pairs) > 1:  # a job has one row per key: all of them match when all pairs do
        labelled = labelled.group_by(job_labels.c.job_id).having(sa.func.count() == len(pairs))
    return jobs.c.id.in_(labelled)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
