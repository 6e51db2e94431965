"""``make example-message_trace``: Redis, the fake property site, the tracing app and the
standalone status service on loopback, then the demo messages; Ctrl-C stops everything."""

from __future__ import annotations

import argparse
import os

import redis

from examples.launcher import free_port, processes, redis_server, run_until_interrupted
from examples.message_trace.consumer import STREAM

DEMO = [
    ("demo-1", "property_scrape", "ok-harbour-view", "false"),
    ("demo-2", "batch_check", "ok-old-town", "true"),
    ("demo-3", "property_scrape", "missing-sold-last-week", "false"),
    ("demo-4", "property_scrape", "flaky-overloaded", "false"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--status-port", type=int, default=8210)
    args = parser.parse_args()
    with redis_server() as broker:
        site = f"http://127.0.0.1:{free_port()}"
        env = {
            "JOBTRAIL_DATABASE_URL": os.environ.get(
                "JOBTRAIL_DATABASE_URL", "sqlite:///message_trace.db"
            ),
            "MESSAGE_TRACE_REDIS_URL": broker,
            "MESSAGE_TRACE_UPSTREAM_URL": site,
        }
        with processes(env) as group:
            group.serve("examples.message_trace.upstream:app", int(site.rsplit(":", 1)[1]))
            base = group.serve("examples.message_trace.app:app", args.port)
            service = group.serve("examples.message_trace.status_service:app", args.status_port)
            with redis.Redis.from_url(broker) as client:
                for message_id, job_type, slug, check_only in DEMO:
                    fields = {"message_id": message_id, "job_type": job_type}
                    fields |= {"url": f"/property/{slug}", "line_user_id": "U-demo"}
                    client.xadd(STREAM, fields | {"check_only": check_only})
            run_until_interrupted(
                f"message_trace: {base}/trace?message_id=demo-1 (polling page), "
                f"{base}/api/v1/jobs/user/U-demo, {service}/job/status?message_id=demo-4, "
                f"dashboard {base}/jobtrail/"
            )


if __name__ == "__main__":
    main()
