"""A process that makes one change to many jobs, for the race tests:
``python -m tests.apps.racer URL ACTION START_AT STEP IDS_FILE``.

It applies ``ACTION`` (``succeed``, ``fail`` or ``cancel``) through the Python API to the n-th
job id in ``IDS_FILE`` at the wall-clock time ``START_AT + n * STEP`` (so every racer reaches
each job at the same moment), and prints one JSON line per job: whether the change was
applied, or the name of the error that refused it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from jobtrail import JobtrailError, Status, Tracker


def apply(tracker: Tracker, action: str, job_id: str) -> None:
    if action == "succeed":
        tracker.report(job_id, {"result": {"by": "succeed"}}, Status.SUCCEEDED)
    elif action == "fail":
        tracker.report(job_id, {"error_message": "by fail"}, Status.FAILED)
    elif action == "cancel":
        tracker.cancel(job_id)
    else:
        raise ValueError(f"unknown action {action!r}")


def main(url: str, action: str, start_at: float, step: float, ids_file: str) -> None:
    ids = Path(ids_file).read_text().split()
    with Tracker(url) as tracker:
        tracker.get(ids[0])  # connect before the start
        for n, job_id in enumerate(ids):
            time.sleep(max(start_at + n * step - time.time(), 0))
            try:
                apply(tracker, action, job_id)
                answer = {"id": job_id, "applied": True}
            except JobtrailError as exc:
                answer = {"id": job_id, "applied": False, "error": type(exc).__name__}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
