"""The OpenAPI document lists every endpoint with its errors, and the API conforms to it under
schemathesis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import schemathesis

from jobtrail import Tracker
from jobtrail.web import create_app
from tests.apps.api_handlers import register
from tests.reliability.harness import SCALE
from tests.web.client import API, TESTCLIENT_WARNING, Api

pytestmark = TESTCLIENT_WARNING


DESIGN_TABLE = [
    ("post", "/jobs"),
    ("post", "/jobs/external"),
    ("patch", "/jobs/{job_id}"),
    ("get", "/jobs/{job_id}"),
    ("get", "/jobs/{job_id}/progress"),
    ("get", "/jobs/{job_id}/events"),
    ("get", "/jobs"),
    ("get", "/jobs/active"),
    ("post", "/jobs/{job_id}/cancel"),
    ("post", "/jobs/{job_id}/retry"),
    ("get", "/stats"),
    ("get", "/jobs/{job_id}/stream"),
    ("get", "/stream"),
    ("get", "/schedules"),
    ("post", "/schedules/{name}/run"),
    ("get", "/health"),
    ("get", "/metrics"),
]


def test_the_openapi_document_lists_every_endpoint_with_its_error_responses(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    paths = spec["paths"]
    for method, path in DESIGN_TABLE:
        operation = paths.get(API + path, {}).get(method)
        assert operation is not None, f"{method.upper()} {path} is not documented"
        codes = set(operation["responses"])
        expected = set()
        if path not in ("/health", "/metrics"):
            expected |= {"401", "422", "429"}
            assert operation.get("security"), f"{method.upper()} {path} needs no token?"
        if "{job_id}" in path or "{name}" in path:
            expected.add("404")
        if path.endswith(("/cancel", "/retry")) or method == "patch":
            expected.add("409")
        if "requestBody" in operation:
            expected.add("413")
        assert expected <= codes, f"{method.upper()} {path} lacks {sorted(expected - codes)}"
        for code in expected:
            schema = operation["responses"][code]["content"]["application/json"]["schema"]
            assert schema, (method, path, code)
    post_jobs = paths[f"{API}/jobs"]["post"]["responses"]
    assert {"200", "202"} <= set(post_jobs)
    assert "201" in paths[f"{API}/jobs/external"]["post"]["responses"]
    assert "201" in paths[f"{API}/jobs/{{job_id}}/retry"]["post"]["responses"]
    assert "202" in paths[f"{API}/jobs/{{job_id}}/cancel"]["post"]["responses"]
    schemas = spec["components"]["schemas"]
    assert {"Job", "Page", "Stats", "ProgressResponse", "EventsResponse"} <= set(schemas)


SEMANTIC_422 = ["2xx", "401", "403", "404", "409", "422", "429"]
"""What a schema-valid request may get where validity goes beyond the schema: ``POST /jobs``
names a kind this server may not have, with a payload its handler may not take; a report's
counts may exceed the job's total."""


def _schemathesis_config(token: str) -> schemathesis.Config:
    # 50 cases per operation in ``make test``; ``make soak`` (scale 20) runs 1,000 each.
    examples = 50 * SCALE
    return schemathesis.Config.from_dict(
        {
            "seed": 20260301,
            "headers": {"Authorization": f"Bearer {token}"},
            # NUL is refused by every text field (one of the schema's patterns says so, JSON
            # values cannot); the other tests send it.
            "generation": {"max-examples": examples, "database": "none", "allow-x00": False},
            "phases": {"stateful": {"enabled": True, "max-steps": 12}},
            "operations": [
                {
                    "include-name": [
                        "POST /api/v1/jobs",
                        "PATCH /api/v1/jobs/{job_id}",
                        "POST /api/v1/jobs/{job_id}/items",
                        "POST /api/v1/jobs/bulk",  # a filter may match too many jobs
                        # A URL's host is resolved and vetted only by the server.
                        "POST /api/v1/webhooks",
                        "PATCH /api/v1/webhooks/{webhook_id}",
                        # Whether a channel URL can be sent to only apprise knows, and a
                        # condition's parameters depend on the condition.
                        "POST /api/v1/alert-rules",
                    ],
                    "checks": {"positive_data_acceptance": {"expected-statuses": SEMANTIC_422}},
                }
            ],
        }
    )


def _failures(stream: Iterator[Any]) -> list[str]:
    from schemathesis.engine import Status, events

    found = []
    for event in stream:
        if isinstance(event, events.FatalError | events.NonFatalError):
            found.append(f"error: {event}")
        if not isinstance(event, events.ScenarioFinished) or event.status is not Status.FAILURE:
            continue
        for case_id, checks in event.recorder.checks.items():
            case = event.recorder.cases[case_id].value
            for check in checks:
                if check.failure_info is not None:
                    failure = check.failure_info.failure
                    found.append(f"{check.name}: {case.method} {case.formatted_path}: {failure}")
    return found


def test_the_api_conforms_to_its_openapi_document_under_every_check(database_url: str) -> None:
    """Schemathesis with every check and the examples, coverage, fuzzing and stateful phases,
    as an admin, over every operation but the streams (they never end; the stream tests cover
    them): no 5xx, no status, header or body outside the document, schema-valid data accepted
    (unless only the server can know it is wrong, ``SEMANTIC_422``), invalid data refused,
    ``Allow`` exact."""
    from schemathesis.engine import from_schema

    # No courier: a generated subscription may name a public address, and nothing may be
    # sent there.
    with Tracker(database_url, auth_rate_limit="100000/minute", webhook_deliver=False) as tracker:
        register(tracker)
        admin = tracker.ops.create_token("admin", None)
        schema = (
            schemathesis.openapi.from_asgi(
                "/openapi.json",
                create_app(tracker, run_worker=False),
                config=_schemathesis_config(admin),
            )
            .include(path_regex="^/api/v1/")
            .exclude(path_regex="stream$")
        )
        assert _failures(from_schema(schema).execute()) == []
