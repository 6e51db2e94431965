"""Odd values through every input path — the Python API, a worker's reporting calls, every REST
body and query field, the CLI's arguments — on SQLite and PostgreSQL: never a 500, never an
unhandled exception, never a job left running, every record readable afterwards.

The odd values (``ODD_VALUES``): NUL, lone surrogates, terminal escapes, control characters, a
bidi override, 10 MB of text, 1e309, NaN, -Infinity, 2**70, nesting 10,000 deep, NUL and
surrogates in keys. The schema-driven fuzzing (schemathesis) is ``tests/web/test_openapi.py``'s.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from jobtrail import Context, JobtrailError, Status, Tracker
from jobtrail.jobs import NewJob
from tests.apps.reliability_handlers import ODD_VALUES, register
from tests.reliability.harness import JOBTRAIL, REPO, budget, command_env
from tests.web.client import API, TESTCLIENT_WARNING, open_client

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

pytestmark = TESTCLIENT_WARNING

ODD_TEXT = {name: v for name, v in ODD_VALUES.items() if isinstance(v, str)}
ODD_NUMBERS = {name: v for name, v in ODD_VALUES.items() if isinstance(v, float | int)}
JSON_LITERALS = {"huge_float": "1e309", "nan": "NaN", "negative_infinity": "-Infinity"}
"""How a JSON body spells the odd numbers (``1e309`` overflows to infinity when parsed)."""
DEEP = 10_000


def checked(tracker: Tracker, job_ids: list[str]) -> list[str]:
    """What is wrong with reading these jobs back: each record, its history and its failed
    items must load, and the listing must hold them all."""
    problems = []
    for job_id in job_ids:
        try:
            job = tracker.get(job_id)
            tracker.events(job_id)
            tracker.failed_items(job_id)
            json.dumps(job.result, allow_nan=False)
        except Exception as exc:
            problems.append(f"{job_id} cannot be read back: {type(exc).__name__}: {exc}"[:300])
    listed: set[str] = set()
    while True:
        page = tracker.list(limit=1000, offset=len(listed))
        listed |= {job.id for job in page.jobs}
        if not page.jobs:
            break
    missing = set(job_ids) - listed
    if missing:
        problems.append(f"{len(missing)} jobs are not listed")
    return problems


# -- the Python API ---------------------------------------------------------------------------


def echo_kinds(tracker: Tracker) -> Tracker:
    @tracker.job("echo")
    def echo(ctx: Context, value: Any = None) -> Any:
        return value

    return register(tracker)


def external(tracker: Tracker) -> str:
    return tracker.add(NewJob(kind="elsewhere", status=Status.RUNNING))[0].id


def one_item(ctx: Context, item_id: Any) -> None:
    with ctx.item(item_id):
        pass


def python_calls(tracker: Tracker) -> dict[str, Callable[[Any], str]]:
    """Every Python call that takes caller input, as ``value → id of the job it touched``."""

    def submitted(**options: Any) -> Callable[[Any], str]:
        return lambda v: tracker.submit("echo", {"value": 1}, **{k: v for k in options}).id

    def reported(field: str, status: Status | None = None) -> Callable[[Any], str]:
        def report(value: Any) -> str:
            job_id = external(tracker)
            tracker.report(job_id, {field: value}, status)
            return job_id

        return report

    def tracked(report: Callable[[Context, Any], None]) -> Callable[[Any], str]:
        def track(value: Any) -> str:
            with tracker.track("in_place") as ctx:
                report(ctx, value)
                return ctx.job_id

        return track

    return {
        "submit payload": lambda v: tracker.submit("echo", {"value": v}).id,
        "submit labels": lambda v: tracker.submit("echo", labels={"odd": v}).id,
        "submit key": submitted(key=None),
        "submit owner": submitted(owner=None),
        "submit trigger": submitted(trigger=None),
        "external kind": lambda v: tracker.add(NewJob(kind=v, status=Status.RUNNING))[0].id,
        "external message": lambda v: tracker.add(NewJob(kind="x", message=v))[0].id,
        "external labels": lambda v: tracker.add(NewJob(kind="x", labels={"odd": v}))[0].id,
        "report message": reported("message"),
        "report progress": reported("progress"),
        "report progress_data": lambda v: reported("progress_data")({"odd": v}),
        "report result": reported("result", Status.SUCCEEDED),
        "report error_message": reported("error_message", Status.FAILED),
        "report error_details": lambda v: reported("error_details", Status.FAILED)({"odd": v}),
        "track message": tracked(lambda ctx, v: ctx.progress(50, v)),
        "track percent": tracked(lambda ctx, v: ctx.progress(v)),
        "track data": tracked(lambda ctx, v: ctx.progress(odd=v)),
        "track item": tracked(one_item),
        "track log": tracked(lambda ctx, v: ctx.log("odd", odd=v)),
    }


TEXT_ONLY = {"submit key", "submit owner", "submit trigger", "external kind", "external message"}
TEXT_ONLY |= {"report message", "report error_message", "track message"}
NUMBER_ONLY = {"report progress", "track percent"}


def test_odd_values_through_the_python_api_are_stored_or_refused_with_a_jobtrail_error(
    tracker: Tracker,
) -> None:
    echo_kinds(tracker)
    touched, unhandled = [], []
    for path, call in python_calls(tracker).items():
        values = ODD_TEXT if path in TEXT_ONLY else ODD_VALUES
        values = ODD_NUMBERS if path in NUMBER_ONLY else values
        for name, value in values.items():
            try:
                touched.append(call(value))
            except JobtrailError:
                pass  # refused, with the library's own error
            except Exception as exc:
                unhandled.append(f"{path} ← {name}: {type(exc).__name__}: {exc}"[:300])
    assert unhandled == [], "\n".join(unhandled)
    assert checked(tracker, touched) == []


# -- a worker's reporting calls ---------------------------------------------------------------

WHERE = ("result", "message", "data", "item", "failed_item", "log", "exception")


@pytest.mark.timeout(budget(300))
def test_odd_values_reported_by_a_running_job_end_it_at_once_and_never_poison_other_jobs(
    tracker: Tracker,
) -> None:
    register(tracker)
    odd = [
        tracker.submit("odd", {"case": case, "where": where}).id
        for case in ODD_VALUES
        for where in WHERE
    ]
    plain = [job.id for job in tracker.submit_many("work", [{"items": 3, "delay": 0}] * 50)]
    # A job whose outcome cannot be written would stay running until rescued on its second
    # attempt; a short heartbeat timeout makes that visible, a burst worker ends when idle.
    tracker.worker(2, heartbeat_interval=0.2, heartbeat_timeout=1.0, poll_interval=0.02).run(
        burst=True
    )

    stuck = []
    for job_id in odd + plain:
        job = tracker.get(job_id)
        if not job.terminal or job.attempt != 1 or job.error_message == "worker lost":
            stuck.append(f"{job.payload}: {job.status} attempt {job.attempt} {job.error_message}")
    assert stuck == [], "\n".join(s[:200] for s in stuck)
    assert {tracker.get(job_id).status for job_id in plain} == {Status.SUCCEEDED}
    assert checked(tracker, odd + plain) == []


# -- REST -------------------------------------------------------------------------------------


@pytest.fixture
def client(tracker: Tracker) -> Iterator[TestClient]:
    from jobtrail.web import create_app

    admin = tracker.ops.create_token("admin", None)
    app = create_app(register(tracker), run_worker=False)
    with open_client(app, raise_server_exceptions=False) as test_client:
        test_client.headers["Authorization"] = f"Bearer {admin}"
        yield test_client


def json_text(name: str) -> str:
    """The odd value ``name`` as JSON text, as an odd client would send it."""
    if name in JSON_LITERALS:
        return JSON_LITERALS[name]
    if name == "deep_nesting":
        return "[" * DEEP + "]" * DEEP
    return json.dumps(ODD_VALUES[name])  # lone surrogates become \\ud800 escapes


def body_with(fields: dict[str, Any], field: str, name: str, wrap: bool = False) -> bytes:
    """``fields`` as JSON with ``field`` set to the odd value (in ``{"odd": …}`` if ``wrap``)."""
    document = json.dumps({**fields, field: {"odd": "@@"} if wrap else "@@"})
    return document.replace('"@@"', json_text(name)).encode()


SUBMIT = {"kind": "work", "payload": {"items": 1}}
COUNTED = ["items_total", "message"]
REPORTED = ["progress_data", "status", "result", "error_message", "error_details"]
FILTERS = ["owner", "status", "kind", "priority", "trigger", "created_from", "created_to", "q"]
BODIES: dict[str, tuple[str, dict[str, Any], list[str], list[str]]] = {
    # what: (path, valid body, plain fields, fields whose value is an object)
    "POST /jobs": (
        "/jobs",
        SUBMIT,
        ["kind", "payload", "owner", "key", "priority", "trigger", "run_after", "labels"],
        ["payload", "labels"],
    ),
    "POST /jobs/external": (
        "/jobs/external",
        {"kind": "elsewhere"},
        ["kind", "owner", "key", "trigger", "status", "priority", "payload", "labels", *COUNTED],
        ["payload", "labels"],
    ),
    "PATCH /jobs/{id}": (
        "/jobs/{id}",
        {},
        ["progress", "message", "items_total", "items_succeeded", "items_failed", *REPORTED],
        ["progress_data", "error_details", "result"],
    ),
}
QUERIES = {
    "/jobs": [*FILTERS, "limit", "offset"],
    "/jobs/{id}/events": ["after", "limit"],
    "/stats": ["days", "owner", "kind"],
}
PATHS = ["/jobs/{odd}", "/jobs/{odd}/progress", "/jobs/{odd}/events"]
POSTS = ["/jobs/{odd}/cancel", "/jobs/{odd}/retry", "/schedules/{odd}/run"]
QUERY_TEXT = {
    **{name: v for name, v in ODD_TEXT.items() if name != "ten_megabytes"},
    "huge_float": "1e309",
    "nan": "NaN",
    "huge_int": str(2**70),
    "far_date": "0001-01-01T00:00:00+14:00",
    "late_date": "9999-12-31T23:59:59-14:00",
}


def url_text(value: str) -> str:
    """``value`` percent-encoded as UTF-8; a lone surrogate as the bytes an odd client sends."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


class Answers:
    """Every answer that breaks the rules: a 5xx, or an error without ``{"detail": …}``."""

    def __init__(self) -> None:
        self.wrong: list[str] = []
        self.calls = 0
        self.codes: Counter[int] = Counter()

    def check(self, what: str, status: int, text: str) -> None:
        self.calls += 1
        self.codes[status] += 1
        if status >= 500:
            self.wrong.append(f"{what} → {status}: {text[:200]}")
        elif status >= 400:
            try:
                assert "detail" in json.loads(text)
            except (ValueError, AssertionError, TypeError):
                self.wrong.append(f"{what} → {status} without a JSON detail: {text[:200]}")


def odd_bodies(client: TestClient, tracker: Tracker, answers: Answers) -> None:
    """Every body field of every write, set to every odd value (bare, and inside an object
    where the field is one)."""
    headers = {"Content-Type": "application/json"}
    for what, (path, valid, fields, objects) in BODIES.items():
        method = what.split()[0]
        for field, name in ((f, n) for f in fields for n in ODD_VALUES):
            for wrap in {False, field in objects}:
                target = API + path.replace("{id}", external(tracker))
                content = body_with(valid, field, name, wrap)
                response = client.request(method, target, content=content, headers=headers)
                label = f"{what} {field}={'{odd: ' if wrap else ''}{name}"
                answers.check(label, response.status_code, response.text)


def odd_queries(client: TestClient, tracker: Tracker, answers: Answers) -> None:
    """Every query parameter, and every path parameter, set to every odd text."""
    job_id = external(tracker)
    for path, parameters in QUERIES.items():
        for parameter, (name, value) in ((p, v) for p in parameters for v in QUERY_TEXT.items()):
            target = API + path.replace("{id}", job_id) + f"?{parameter}={url_text(value)}"
            response = client.get(target)
            answers.check(f"GET {path} ?{parameter}={name}", response.status_code, response.text)
    for name, value in QUERY_TEXT.items():
        for method, path in [*(("GET", p) for p in PATHS), *(("POST", p) for p in POSTS)]:
            response = client.request(method, API + path.replace("{odd}", url_text(value)))
            answers.check(f"{method} {path} {name}", response.status_code, response.text)


@pytest.mark.timeout(budget(300))
def test_odd_values_in_every_rest_field_never_answer_500_nor_corrupt_a_record(
    client: TestClient, tracker: Tracker
) -> None:
    answers = Answers()
    odd_bodies(client, tracker, answers)
    odd_queries(client, tracker, answers)
    print(f"\n{answers.calls} odd requests: {dict(answers.codes)}")
    assert answers.wrong == [], "\n".join(answers.wrong)

    every = [j["id"] for j in client.get(f"{API}/jobs", params={"limit": 1000}).json()["jobs"]]
    unreadable = {}
    for job_id in every:
        response = client.get(f"{API}/jobs/{job_id}")
        if response.status_code != 200:
            unreadable[job_id] = response.status_code
    assert unreadable == {}
    assert checked(tracker, every) == []


# -- the CLI ----------------------------------------------------------------------------------

CLI_TEXT = {
    name: value.encode("utf-8", "surrogatepass")
    for name, value in ODD_TEXT.items()
    if "\x00" not in value and name != "ten_megabytes"  # the OS takes neither as an argument
}
CLI_NUMBERS = {"huge_float": b"1e309", "nan": b"NaN", "huge_int": str(2**70).encode()}
CLI_NUMBERS |= {"far_date": b"0001-01-01T00:00:00+14:00", "late_date": b"9999-12-31T23:59:59-14:00"}
APP_OPTION = [b"--app", b"tests.apps.reliability_app:tracker"]


def cli_commands(odd: bytes) -> list[list[bytes]]:
    """Every command and option that takes a caller's text, with ``odd`` as that text."""
    payload = b'{"items": 1, "odd": "' + odd + b'"}'
    return [
        [b"jobs", b"ls", b"--owner", odd, b"--kind", odd, b"-q", odd, b"--trigger", odd],
        [b"jobs", b"show", odd],
        [b"jobs", b"cancel", odd],
        [b"jobs", b"retry", odd, b"--json"],
        [b"jobs", b"watch", odd, b"--timeout", b"0.1"],
        [b"stats", b"--owner", odd, b"--kind", odd],
        [b"submit", odd, *APP_OPTION],
        [b"submit", b"work", *APP_OPTION, b"--owner", odd, b"--key", odd, b"--payload", payload],
    ]


def cli_number_commands(odd: bytes) -> list[list[bytes]]:
    """Every option that takes a time or a number, with ``odd`` as its value."""
    return [
        [b"jobs", b"ls", b"--since", odd],
        [b"jobs", b"ls", b"--until", odd, b"--limit", odd],
        [b"jobs", b"watch", b"x", b"--timeout", odd, b"--interval", odd],
        [b"stats", b"--days", odd],
        [b"submit", b"work", *APP_OPTION, b"--payload", b'{"items": ' + odd + b"}"],
    ]


def run_cli(database_url: str, argv: list[bytes]) -> subprocess.CompletedProcess[bytes]:
    env = {k.encode(): v.encode() for k, v in command_env(database_url).items()}
    return subprocess.run(
        [os.fsencode(JOBTRAIL), *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(budget(300))
def test_odd_cli_arguments_and_odd_job_fields_give_one_line_errors_and_clean_output(
    tracker: Tracker, database_url: str
) -> None:
    register(tracker)
    escapes = ODD_VALUES["terminal_escapes"]
    shown = tracker.add(NewJob(kind=escapes, owner=escapes, status=Status.RUNNING))[0]
    tracker.report(shown.id, {"message": escapes, "result": escapes}, Status.SUCCEEDED)
    calls = [(name, argv) for name, odd in CLI_TEXT.items() for argv in cli_commands(odd)]
    calls += [
        (name, argv) for name, odd in CLI_NUMBERS.items() for argv in cli_number_commands(odd)
    ]
    wrong = []
    with ThreadPoolExecutor(2) as pool:  # two at a time: each command is mostly start-up
        done_all = pool.map(lambda call: run_cli(database_url, call[1]), calls)
        for (name, argv), done in zip(calls, done_all, strict=True):
            if done.returncode not in (0, 1, 2) or b"Traceback" in done.stderr:
                command = b" ".join(argv[:3]).decode(errors="backslashreplace") + f" … {name}"
                tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
                wrong.append(f"{command}: exit {done.returncode} {tail}")
    for argv in ([b"jobs", b"show", shown.id.encode()], [b"jobs", b"ls"]):
        done = run_cli(database_url, argv)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        if b"\x1b" in done.stdout or b"\x9b" in done.stdout or b"\xc2\x9b" in done.stdout:
            wrong.append(f"{b' '.join(argv).decode()}: raw terminal escapes in the output")
    assert wrong == [], "\n".join(wrong)
    assert checked(tracker, [shown.id]) == []
    assert math.isfinite(tracker.get(shown.id).progress)
