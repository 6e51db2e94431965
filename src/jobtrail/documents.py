"""The job document: a job as the API's ``GET /jobs/{id}`` shows it (redacted, as JSON),
built in one place for the API's hand-made responses and for webhook payloads."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from jobtrail.jobs import JSON, Job

if TYPE_CHECKING:
    from jobtrail.redaction import Redactor


@functools.cache
def _adapter() -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(Job)


def job_document(job: Job, redactor: Redactor) -> JSON:
    """``job`` with its payload and errors masked by ``redactor``, as JSON values."""
    return _adapter().dump_python(redactor.job(job), mode="json")
