"""Bad input: too large a body gets a 413, bad filters and malformed or unstorable bodies a 422,
path tricks never a 5xx, and every refusal is one the OpenAPI document lists."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.client import API, BODY_LIMIT, TESTCLIENT_WARNING, Api

pytestmark = TESTCLIENT_WARNING


def test_a_body_declared_over_the_limit_is_refused_with_413(api: Api) -> None:
    body = {"kind": "greet", "payload": {"name": "x" * BODY_LIMIT}}
    response = api.client.post(f"{API}/jobs", json=body, headers=api.admin)
    assert response.status_code == 413
    assert str(BODY_LIMIT) in response.json()["detail"]
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 0


def test_a_chunked_body_over_the_limit_is_refused_with_413(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "greet", "payload": {"name": "'
        for _ in range(BODY_LIMIT // 256 + 1):
            yield b"x" * 256
        yield b'"}}'

    headers = api.admin | {"Content-Type": "application/json"}
    response = api.client.post(f"{API}/jobs", content=chunks(), headers=headers)

    assert response.status_code == 413, response.text
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 0


BAD_FILTERS = [
    ("/jobs?limit=0", "limit"),
    ("/jobs?limit=5000", "limit"),
    ("/jobs?limit=ten", "limit"),
    ("/jobs?offset=-1", "offset"),
    ("/jobs?status=bogus", "status"),
    ("/jobs?status=queued&status=bogus", "status"),
    ("/jobs?priority=bogus", "priority"),
    ("/jobs?created_from=yesterday", "created_from"),
    ("/jobs/some-id/events?after=-1", "after"),
    ("/jobs/some-id/events?limit=0", "limit"),
    ("/stats?days=0", "days"),
    ("/jobs/" + "x" * 65, "job_id"),
]


def test_bad_filters_are_refused_with_422_naming_the_parameter(api: Api) -> None:
    for path, field in BAD_FILTERS:
        response = api.client.get(API + path, headers=api.admin)
        assert response.status_code == 422, (path, response.text)
        assert any(field in error["loc"] for error in response.json()["detail"]), path


MALFORMED_BODIES = [
    ("POST", "/jobs", b'{"kind": "greet", '),
    ("POST", "/jobs", b'["greet"]'),
    ("POST", "/jobs", b'{"kind": "greet", "payload": [1, 2]}'),
    ("POST", "/jobs", b'{"kind": "greet", "priority": "asap"}'),
    ("POST", "/jobs", b'{"kind": "greet", "surprise": 1}'),
    ("POST", "/jobs/external", b'{"kind": ""}'),
    ("POST", "/jobs/external", b'{"kind": "x", "items_total": -1}'),
    ("PATCH", "/jobs/some-id", b'{"progress": 150}'),
    ("PATCH", "/jobs/some-id", b'{"status": "finished"}'),
    ("PATCH", "/jobs/some-id", b"not json"),
]


def test_malformed_bodies_are_refused_with_422(api: Api) -> None:
    headers = api.admin | {"Content-Type": "application/json"}
    for method, path, content in MALFORMED_BODIES:
        response = api.client.request(method, API + path, content=content, headers=headers)
        assert response.status_code == 422, (method, path, content, response.text)
        assert response.json()["detail"], content
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 0


TRICKS = [
    "/jobs/..%2F..%2Fetc",
    "/jobs/..%2F..%2Fetc/events",
    "/jobs/%2e%2e",
    "/jobs/%2e%2e/cancel",
    "/jobs/a%00b",
    "/jobs/%ff%fe",
    "/jobs/%F0%9F%92%A5",
    "/jobs/..;",
    "/jobs/%252e%252e%252f",
    "/jobs/x/events?after=99999999999999999999999",
    "/jobs?created_from=9999-99-99",
    "/jobs?q=%27%22--%3B",
    "/stream?status=bogus",
]


def test_path_and_query_tricks_never_answer_5xx(api: Api) -> None:
    answers = {
        (method, path): api.client.request(method, API + path, headers=api.admin).status_code
        for path in TRICKS
        for method in ("GET", "POST")
    }
    assert {key: code for key, code in answers.items() if code >= 500} == {}
    assert set(answers.values()) <= {200, 404, 405, 422}


NUL = "a\x00b"


TOO_BIG = 2**40


def test_text_with_nul_characters_or_counts_beyond_32_bits_never_answer_5xx(api: Api) -> None:
    """Bad input is refused with a 4xx (or stored); it never looks like a broken server."""
    job_id = api.external(api.admin, kind="export")["id"]
    requests: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None]] = [
        ("POST", "/jobs/external", {"kind": NUL}, None),
        ("POST", "/jobs/external", {"kind": "x", "owner": NUL}, None),
        ("POST", "/jobs/external", {"kind": "x", "key": NUL}, None),
        ("POST", "/jobs/external", {"kind": "x", "message": NUL}, None),
        ("POST", "/jobs/external", {"kind": "x", "payload": {"k": NUL}}, None),
        ("POST", "/jobs/external", {"kind": "x", "payload": {NUL: 1}}, None),
        ("POST", "/jobs/external", {"kind": "x", "labels": {"k": NUL}}, None),
        ("POST", "/jobs/external", {"kind": "x", "items_total": TOO_BIG}, None),
        ("POST", "/jobs", {"kind": "greet", "payload": {"name": NUL}}, None),
        ("POST", "/jobs", {"kind": "greet", "payload": {"name": "x"}, "key": NUL}, None),
        ("PATCH", f"/jobs/{job_id}", {"message": NUL}, None),
        ("PATCH", f"/jobs/{job_id}", {"result": NUL}, None),
        ("PATCH", f"/jobs/{job_id}", {"progress_data": {NUL: 1}}, None),
        ("PATCH", f"/jobs/{job_id}", {"items_total": TOO_BIG}, None),
        ("PATCH", f"/jobs/{job_id}", {"items_succeeded": TOO_BIG}, None),
        ("GET", "/jobs", None, {"q": NUL}),
        ("GET", "/jobs", None, {"kind": NUL}),
        ("GET", "/jobs", None, {"owner": NUL}),
        ("GET", "/stats", None, {"kind": NUL}),
    ]
    server_errors = []
    for method, path, body, params in requests:
        response = api.client.request(
            method, API + path, json=body, params=params, headers=api.admin
        )
        if response.status_code >= 500:
            server_errors.append((method, path, body or params, response.status_code))
    assert server_errors == []


UNSTORABLE_BODIES = [
    ("POST", "/jobs/external", b'{"kind": "a\\ud800b"}'),
    ("POST", "/jobs/external", b'{"kind": "x", "message": "\\udfff"}'),
    ("POST", "/jobs/external", b'{"kind": "x", "payload": {"n": NaN}}'),
    ("POST", "/jobs/external", b'{"kind": "x", "payload": {"n": 1e400}}'),
    ("POST", "/jobs/external", b'{"kind": "x", "labels": {"n": -Infinity}}'),
    ("POST", "/jobs/external", b'{"kind": "x", "payload": {"\\ud800": 1}}'),
    ("POST", "/jobs/external", b'{"kind": "x", "items_total": false}'),
    ("POST", "/jobs/external", b'{"kind": "x", "items_total": 2.5}'),
    ("POST", "/jobs/external", b'{"kind": "x", "items_total": "3"}'),
    ("POST", "/jobs", b'{"kind": "greet", "payload": {"name": NaN}}'),
    ("POST", "/jobs", b'{"kind": "greet", "payload": {"name": "x"}, "run_after": 0}'),
    ("POST", "/jobs", b'{"kind": "greet", "payload": {"name": "x"}, "run_after": true}'),
    (
        "POST",
        "/jobs",
        b'{"kind": "greet", "payload": {}, "run_after": "0001-01-01T00:00:00+14:00"}',
    ),
    ("PATCH", "/jobs/{id}", b'{"progress": NaN}'),
    ("PATCH", "/jobs/{id}", b'{"progress": Infinity}'),
    ("PATCH", "/jobs/{id}", b'{"progress": true}'),
    ("PATCH", "/jobs/{id}", b'{"message": "\\ud800"}'),
    ("PATCH", "/jobs/{id}", b'{"error_message": "\\ud800"}'),
    ("PATCH", "/jobs/{id}", b'{"result": {"n": NaN}}'),
    ("PATCH", "/jobs/{id}", b'{"progress_data": {"n": 1e999}}'),
    ("PATCH", "/jobs/{id}", b'{"error_details": [Infinity]}'),
    ("PATCH", "/jobs/{id}", b'{"items_failed": true}'),
]


def test_unstorable_text_numbers_and_mistyped_counts_are_refused_with_a_json_422(
    api: Api,
) -> None:
    """Lone surrogates, non-finite numbers, booleans as counts, numbers as times: a 422 whose
    body is JSON (it echoes the input it refuses), on both dialects, never a 500."""
    job_id = api.external(api.admin, kind="export")["id"]
    headers = api.admin | {"Content-Type": "application/json"}
    answers = {}
    for method, path, content in UNSTORABLE_BODIES:
        response = api.client.request(
            method, API + path.format(id=job_id), content=content, headers=headers
        )
        answers[content] = response.status_code
        if response.status_code == 422:
            assert response.json()["detail"][0]["loc"][0] == "body", response.text
    assert {c: code for c, code in answers.items() if code != 422} == {}
    job = api.job(job_id)
    assert (job["progress"], job["message"], job["result"]) == (0, None, None)
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 1


@pytest.mark.parametrize(
    ("query", "page_lists"),
    [
        ("created_from=0001-01-01T00:00:00%2B14:00", 1),
        ("created_to=9999-12-31T23:59:59-14:00", 1),
        ("created_to=false", 1),
        ("created_to=0", 1),
        ("created_from=2999-01-01", 0),  # the page's own inputs may name a day
    ],
)
def test_times_out_of_range_or_not_times_are_refused_by_the_api_and_ignored_by_pages(
    api: Api, query: str, page_lists: int
) -> None:
    api.external(api.admin, kind="export")
    refused = api.client.get(f"{API}/jobs?{query}", headers=api.admin)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"][0] == "query"

    page = api.cookie_client(api.admin).get(f"/jobs?{query}")
    assert page.status_code == 200
    listed_jobs = f"{page_lists} job{'' if page_lists == 1 else 's'} ·"
    assert listed_jobs in page.text  # a time that cannot be applied is left out
    listed = api.client.get(f"{API}/jobs?created_from=2020-01-01T00:00:00Z", headers=api.admin)
    assert listed.json()["total_count"] == 1


def test_a_body_that_is_not_utf8_is_refused_with_a_documented_4xx(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()["paths"]
    headers = api.admin | {"Content-Type": "application/json"}
    for method, path, documented in [
        ("POST", "/jobs", spec[f"{API}/jobs"]["post"]["responses"]),
        ("POST", "/jobs/external", spec[f"{API}/jobs/external"]["post"]["responses"]),
        ("PATCH", "/jobs/some-id", spec[f"{API}/jobs/{{job_id}}"]["patch"]["responses"]),
    ]:
        response = api.client.request(method, API + path, content=b"\xff\xfe{", headers=headers)
        assert 400 <= response.status_code < 500, (method, path, response.text)
        assert str(response.status_code) in documented, (method, path, response.text)


def test_an_external_job_asked_to_start_finished_is_refused_with_a_documented_4xx(
    api: Api,
) -> None:
    documented = api.client.get("/openapi.json").json()["paths"][f"{API}/jobs/external"]["post"]
    for status in ("succeeded", "partial", "failed", "cancelled"):
        response = api.client.post(
            f"{API}/jobs/external", json={"kind": "export", "status": status}, headers=api.admin
        )
        assert 400 <= response.status_code < 500, response.text
        assert str(response.status_code) in documented["responses"], (status, response.text)
    assert api.client.get(f"{API}/jobs", headers=api.admin).json()["total_count"] == 0


def test_options_and_unsupported_methods_list_exactly_the_paths_methods(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()["paths"]
    for path, concrete in [
        ("/jobs", "/jobs"),
        ("/jobs/external", "/jobs/external"),
        ("/jobs/active", "/jobs/active"),
        ("/jobs/{job_id}", "/jobs/some-id"),
        ("/jobs/{job_id}/cancel", "/jobs/some-id/cancel"),
        ("/stats", "/stats"),
    ]:
        documented = {m.upper() for m in spec[API + path]}
        options = api.client.options(API + concrete, headers=api.admin)
        assert options.status_code in (200, 204), (path, options.text)
        assert set(options.headers["allow"].split(", ")) == documented, path
        other = ({"GET", "POST", "PATCH", "PUT", "DELETE"} - documented).pop()
        refused = api.client.request(other, API + concrete, headers=api.admin)
        assert refused.status_code == 405, (other, path, refused.text)
        assert set(refused.headers["allow"].split(", ")) == documented, (other, path)
    untouched = api.client.patch(f"{API}/jobs/active", json={}, headers=api.admin)
    assert untouched.status_code == 405  # not taken for PATCH /jobs/{job_id} with id "active"
