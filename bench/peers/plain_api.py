"""The framework's own cost: a plain FastAPI app answering a job-shaped document by id."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()

JOB: dict[str, object] = {
    "kind": "bench_get",
    "owner": None,
    "status": "running",
    "progress": 50.0,
    "message": "half way",
    "items_total": None,
    "items_done": None,
    "payload": {},
    "labels": {},
    "attempt": 1,
    "max_attempts": 1,
    "created_at": "2026-12-01T00:00:00+00:00",
    "updated_at": "2026-12-01T00:00:01+00:00",
}


@app.get("/api/v1/jobs/{job_id}")
def get_job(job_id: str) -> dict[str, object]:
    """A fixed job under the id asked for (a `def` route, as jobtrail's are)."""
    return {"id": job_id, **JOB}
