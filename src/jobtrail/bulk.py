"""Bulk actions: cancel or retry many jobs at once — chosen by id or by a filter — each through
the same single-job change, so every job's history records it with the actor."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from jobtrail.exceptions import IllegalTransition, JobNotFound, TooManyJobs
from jobtrail.filters import Filters
from jobtrail.jobs import BulkAction, BulkOutcome, Job

if TYPE_CHECKING:
    from jobtrail.store.lineage import LineageStore
    from jobtrail.store.records import JobStore


class OneJob(Protocol):
    """The single-job changes a bulk action repeats (``Tracker`` is one)."""

    def get(self, job_id: str) -> Job: ...

    def cancel(self, job_id: str, actor: str | None = None) -> Job: ...

    def retry(
        self, job_id: str, only_failed_items: bool = False, actor: str | None = None
    ) -> Job: ...


MAX_BULK = 1000
"""The most jobs one bulk action takes; a filter matching more is refused (narrow it)."""
_PAGE = 1000


def matching(jobs: JobStore, where: Filters, owner: str | None) -> list[str]:
    """The ids of every job matching ``where`` (among ``owner``'s when given), read before
    anything changes (a cancel moves a job out of a status filter, which would shift pages)."""
    if owner is not None:
        elsewhere = where.owner not in (None, owner)
        where = replace(where, owner=owner, nothing=where.nothing or elsewhere)
    first = jobs.find(where, limit=_PAGE, offset=0, order="created")
    if first.total_count > MAX_BULK:
        raise TooManyJobs(first.total_count, MAX_BULK)
    ids = [job.id for job in first.jobs]
    for offset in range(_PAGE, first.total_count, _PAGE):
        page = jobs.find(where, limit=_PAGE, offset=offset, order="created")
        ids += [job.id for job in page.jobs]
    return list(dict.fromkeys(ids))


def act_on_many(
    one: OneJob,
    lineage: LineageStore,
    action: BulkAction,
    job_ids: Iterable[str],
    owner: str | None,
    actor: str | None,
) -> BulkOutcome:
    """Apply ``action`` to each job (only ``owner``'s when given: others are "not found"),
    one job at a time; a job the action does not apply to is skipped with the reason."""
    ids = list(dict.fromkeys(job_ids))
    if len(ids) > MAX_BULK:
        raise TooManyJobs(len(ids), MAX_BULK)
    done: list[str] = []
    retries: dict[str, str] = {}
    skipped: dict[str, str] = {}
    # A second click must not queue every job twice; checked after the owner, so that another
    # owner's job is "not found", never "already retried as <its retry>".
    retried = dict(_retried(lineage, ids)) if action is not BulkAction.CANCEL else {}
    for job_id in ids:
        try:
            job = one.get(job_id)
            if owner is not None and job.owner != owner:
                raise JobNotFound(job_id)
            reason = _refusal(action, job, retried.get(job_id))
            if reason is not None:
                skipped[job_id] = reason
                continue
            if action is BulkAction.CANCEL:
                one.cancel(job_id, actor=actor)
            else:
                only_failed = action is BulkAction.RETRY_FAILED_ITEMS
                retries[job_id] = one.retry(job_id, only_failed, actor=actor).id
            done.append(job_id)
        except JobNotFound:
            skipped[job_id] = "not found"
        except IllegalTransition as exc:  # it changed since it was read
            skipped[job_id] = str(exc)
    return BulkOutcome(action, len(ids), done, retries, skipped)


def _retried(lineage: LineageStore, ids: list[str]) -> Iterable[tuple[str, str]]:
    """``(job, its retry)`` for the jobs in ``ids`` that were retried already."""
    for start in range(0, len(ids), _PAGE):
        chunk = ids[start : start + _PAGE]
        yield from lineage.retried(chunk)


def _refusal(action: BulkAction, job: Job, retry: str | None) -> str | None:
    """Why ``action`` does not apply to ``job`` as it is now (``retry``: the job that already
    retried it); None when it does."""
    if action is BulkAction.CANCEL:
        return "already ended" if job.terminal else None
    if retry is not None:
        return f"already retried as {retry}"
    if job.status not in ("failed", "partial", "cancelled"):
        return f"{job.status}: only failed, partial or cancelled jobs are retried"
    if action is BulkAction.RETRY_FAILED_ITEMS and not job.items_failed:
        return "no failed items"
    return None
