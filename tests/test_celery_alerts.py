"""A Celery task that fails raises an alert with no jobtrail worker anywhere: the Celery
worker's presence evaluates the rules, and the message reaches a real receiver."""

from __future__ import annotations

from typing import Any

from jobtrail import Tracker
from tests.receivers import json_receiver


def test_a_failing_celery_task_alerts_through_the_celery_workers_evaluation(
    shared_celery: Any, database_url: str
) -> None:
    from celery.contrib.testing.worker import start_worker

    from tests.apps.celery_app import use_tracker

    with json_receiver() as hook, Tracker(database_url, alert_interval=0.1) as tracker:
        tracker.alert("celery-failures", "failed", kind="explode", channels=[hook.url()])
        app = use_tracker(shared_celery, tracker)
        with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False):
            result = app.send_task("explode", kwargs={"secret": "s3cr3t"})
            tracker.wait(result.id, timeout=30)
            [message] = hook.received.wait_for(1, timeout=10)
    assert message["title"] == "[jobtrail] celery-failures firing: kind=explode"
    assert "ValueError" in message["message"]
    assert "s3cr3t" not in message["message"]
    assert f"job {result.id}" in message["message"]
