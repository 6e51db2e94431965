"""Publishes tracked tasks and exits at once, without flushing: run as a process by the test
that checks nothing published is lost at exit."""

from __future__ import annotations

import os

from celery import Celery

import jobtrail
from jobtrail.integrations.celery import TrackedTask, install

QUEUE = "jobtrail_exit_probe"


def main() -> None:
    app = Celery("jobtrail_exit_probe", broker=os.environ["CELERY_TEST_BROKER"])
    app.conf.update(task_ignore_result=True, task_default_queue=QUEUE)
    install(app, jobtrail.Tracker())

    @app.task(base=TrackedTask, bind=True, name="exit_probe")
    def exit_probe(self: TrackedTask, n: int) -> int:
        return n

    for n in range(int(os.environ["PUBLISH_COUNT"])):
        exit_probe.apply_async(kwargs={"n": n}, headers={"jobtrail_owner": "acme"})
    # No flush: the records still on their way must be written before the process ends.


if __name__ == "__main__":
    main()
