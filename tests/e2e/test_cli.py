"""The command line for people: the real ``jobtrail`` executable reading and changing jobs in the
store directly, and through a real ``jobtrail serve`` with ``--url``/``--token``."""

from __future__ import annotations

import getpass
import json
import os
import pty
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pydantic_core
import pytest

from jobtrail import Context, Status, Tracker
from jobtrail.exceptions import SchemaError
from jobtrail.jobs import Job, NewJob
from jobtrail.redaction import MASK
from jobtrail.scheduler import Scheduler
from tests.apps.handlers import register
from tests.servers import free_port
from tests.waiting import until_answers

REPO = Path(__file__).resolve().parents[2]
JOBTRAIL = str(Path(sys.executable).parent / "jobtrail")
ACTOR = f"cli:{getpass.getuser()}"
APP = "tests.apps.api_app:tracker"

Json = dict[str, Any]


def environment(database_url: str | None) -> dict[str, str]:
    """This store (None: none named), and no ``JOBTRAIL_*`` setting (server, token) leaking in
    from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTRAIL_")}
    store = {} if database_url is None else {"JOBTRAIL_DATABASE_URL": database_url}
    return env | store | {"COLUMNS": "160"}


def jobtrail(
    database_url: str | None, *args: str, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run one ``jobtrail`` command to its end (in the folder ``cwd``)."""
    return subprocess.run(
        [JOBTRAIL, *args],
        cwd=cwd,
        env=environment(database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def json_of(database_url: str, *args: str) -> Any:
    """The JSON a ``jobtrail … --json`` command prints (it must succeed)."""
    done = jobtrail(database_url, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for word in words:
        assert word in done.stderr


def added(tracker: Tracker, *new: NewJob) -> list[Job]:
    """Record these jobs as they are described (no registered kind needed)."""
    return [tracker.add(job)[0] for job in new]


def listed(database_url: str, *args: str) -> set[str]:
    """The ids ``jobtrail jobs ls --json`` prints."""
    return {job["id"] for job in json_of(database_url, "jobs", "ls", *args)["jobs"]}


# -- a job that runs in this process until the test lets it end -------------------------------


@dataclass
class HeldJob:
    """A job tracked in a thread of the test: it reports one item, then waits for ``release``."""

    id: str
    release: threading.Event


@contextmanager
def held_job(tracker: Tracker, *, fail: bool) -> Iterator[HeldJob]:
    started: queue.Queue[str] = queue.Queue()
    release = threading.Event()

    def run() -> None:
        try:
            with tracker.track("export", owner="A", total=2) as ctx:
                started.put(ctx.job_id)
                with ctx.item("first"):
                    ctx.progress(message="exported the first file")
                ctx.flush()
                release.wait(30)
                if fail:
                    raise RuntimeError("the upstream refused the second file")
                with ctx.item("second"):
                    ctx.progress(message="exported the second file")
        except RuntimeError:
            pass  # recorded as the job's failure; the thread has nothing more to do

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield HeldJob(started.get(timeout=10), release)
    finally:
        release.set()
        thread.join(10)


class Terminal:
    """A ``jobtrail`` command attached to a pseudo-terminal, as a person would run it."""

    def __init__(self, database_url: str, *args: str) -> None:
        self.master, replica = pty.openpty()
        self.process = subprocess.Popen(
            [JOBTRAIL, *args],
            cwd=REPO,
            env=environment(database_url),
            stdin=subprocess.DEVNULL,
            stdout=replica,
            stderr=replica,
        )
        os.close(replica)
        self.screen = ""

    def read_until(self, text: str, timeout: float = 20.0) -> str:
        """Read the output until ``text`` appears (or the command ends); all of it so far."""
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} on the terminal within {timeout} s:\n{self.screen}"
            ready, _, _ = select.select([self.master], [], [], left)
            try:
                chunk = os.read(self.master, 65536) if ready else b""
            except OSError:  # the command ended and closed the terminal
                break
            if ready and not chunk:
                break
            self.screen += chunk.decode(errors="replace")
        return self.screen

    def exit_code(self, timeout: float = 20.0) -> int:
        self.read_until("\0never\0", timeout)  # drain the terminal to the end
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


@contextmanager
def terminal(database_url: str, *args: str) -> Iterator[Terminal]:
    session = Terminal(database_url, *args)
    try:
        yield session
    finally:
        session.close()


def watch_until_it_ends(database_url: str, job: HeldJob, *options: str) -> tuple[int, str]:
    """``jobs watch`` a held job: see the live bar while it runs, then let it end."""
    with terminal(database_url, "jobs", "watch", job.id, *options) as watcher:
        watcher.read_until("exported the first file")
        job.release.set()
        code = watcher.exit_code()
        return code, watcher.screen


# -- the store, directly ----------------------------------------------------------------------


def test_jobs_ls_json_filters_by_status_kind_and_owner(tracker: Tracker, database_url: str) -> None:
    queued_a, running_b, waiting_a = added(
        tracker,
        NewJob(kind="export", owner="A", payload={"account": "A1", "password": "hunter2"}),
        NewJob(kind="import", owner="B", status=Status.RUNNING),
        NewJob(kind="import", owner="A", status=Status.WAITING),
    )
    with tracker.track("export", owner="B") as ctx:
        succeeded_b = ctx.job_id

    page = json_of(database_url, "jobs", "ls")
    assert page["total_count"] == 4
    assert page["jobs"][0]["id"] == succeeded_b  # newest first
    assert {job["status"] for job in page["jobs"]} == {"queued", "running", "waiting", "succeeded"}
    [shown] = [job for job in page["jobs"] if job["id"] == queued_a.id]
    assert shown["payload"] == {"account": "A1", "password": MASK}  # as the API shows it
    assert listed(database_url, "--status", "queued", "--status", "waiting") == {
        queued_a.id,
        waiting_a.id,
    }
    assert listed(database_url, "--kind", "import") == {running_b.id, waiting_a.id}
    assert listed(database_url, "--owner", "B") == {running_b.id, succeeded_b}
    assert listed(database_url, "--owner", "A", "--kind", "export") == {queued_a.id}
    limited = json_of(database_url, "jobs", "ls", "--limit", "1", "--offset", "1")
    assert (limited["total_count"], len(limited["jobs"]), limited["offset"]) == (4, 1, 1)

    table = jobtrail(database_url, "jobs", "ls", "--owner", "B")
    assert table.returncode == 0, table.stderr
    assert running_b.id[:8] in table.stdout
    assert "succeeded" in table.stdout
    assert "1–2 of 2 jobs" in table.stdout


def partial_job(tracker: Tracker) -> str:
    """A finished job whose item ``b`` failed and the others succeeded."""
    with tracker.track("import", owner="A", total=3) as ctx:
        for item in ("a", "b", "c"):
            with ctx.item(item):
                if item == "b":
                    raise ValueError("row 7 of b is not a date")
    return ctx.job_id


def test_jobs_ls_into_a_pipe_cuts_no_cell(tracker: Tracker, database_url: str) -> None:
    owner = "an-owner-with-a-rather-long-name"
    [job] = added(tracker, NewJob("a-kind-with-a-long-name-too", owner=owner))
    tracker.cancel(job.id)
    env = {k: v for k, v in environment(database_url).items() if k != "COLUMNS"}

    done = subprocess.run(
        [JOBTRAIL, "jobs", "ls"], env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert owner in done.stdout
    assert "a-kind-with-a-long-name-too" in done.stdout
    assert "cancelled" in done.stdout
    assert "…" not in done.stdout


def test_worker_runs_the_jobs_of_the_store_given_by_database_url(
    tracker: Tracker, database_url: str, tmp_path: Path
) -> None:
    job = register(tracker).submit("noop", {"log": str(tmp_path / "runs.log")})

    done = jobtrail(None, "worker", "--app", "tests.apps.worker_app:tracker", "--burst",
                    "--database-url", database_url)  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert tracker.get(job.id).status is Status.SUCCEEDED


def test_jobs_show_json_includes_the_events_and_failed_items(
    tracker: Tracker, database_url: str
) -> None:
    job_id = partial_job(tracker)

    shown = json_of(database_url, "jobs", "show", job_id[:8])  # a recent job's id prefix will do
    assert (shown["id"], shown["status"], shown["items_failed"]) == (job_id, "partial", 1)
    types = [event["type"] for event in shown["events"]]
    assert types[:2] == ["created", "started"]
    assert "item_failed" in types
    assert types[-1] == "partial"
    assert [(i["item_id"], i["error_type"]) for i in shown["failed_items"]] == [("b", "ValueError")]
    assert shown["failed_items"][0]["message"] == "row 7 of b is not a date"

    page = jobtrail(database_url, "jobs", "show", job_id)
    assert page.returncode == 0, page.stderr
    assert "Failed items (1)" in page.stdout
    assert "row 7 of b is not a date" in page.stdout
    missing = jobtrail(database_url, "jobs", "show", "no-such-job")
    assert missing.returncode == 1
    assert_one_line_error(missing, "no-such-job", "not found")


def test_jobs_ls_and_show_name_the_stage_a_running_job_is_in(
    tracker: Tracker, database_url: str
) -> None:
    started: queue.Queue[str] = queue.Queue()
    release = threading.Event()

    def run() -> None:
        with tracker.track("media_sync", owner="A") as ctx:
            ctx.stage("found", start=20, end=90, message="found 12 items")
            ctx.flush()
            started.put(ctx.job_id)
            release.wait(30)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        job_id = started.get(timeout=10)
        listing = jobtrail(database_url, "jobs", "ls")
        page = jobtrail(database_url, "jobs", "show", job_id)
    finally:
        release.set()
        worker.join()

    assert listing.returncode == 0, listing.stderr
    assert "found found 12 items" in listing.stdout
    assert page.returncode == 0, page.stderr
    facts = {line.split(maxsplit=1)[0]: line for line in page.stdout.splitlines() if line.strip()}
    assert facts["stage"].split() == ["stage", "found"]
    assert facts["progress"].split() == ["progress", "20%"]


def test_jobs_watch_exits_0_when_the_job_it_follows_succeeds(
    tracker: Tracker, database_url: str
) -> None:
    with held_job(tracker, fail=False) as job:
        code, screen = watch_until_it_ends(database_url, job)
    assert code == 0, screen
    assert "running" in screen  # the live bar, drawn while the job ran
    assert "1/2" in screen
    assert f"✔ {job.id} succeeded" in screen


def test_jobs_watch_exits_1_when_the_job_it_follows_fails(
    tracker: Tracker, database_url: str
) -> None:
    with held_job(tracker, fail=True) as job:
        code, screen = watch_until_it_ends(database_url, job)
    assert code == 1, screen
    assert f"✘ {job.id} failed" in screen
    assert "the upstream refused the second file" in screen

    unknown = jobtrail(database_url, "jobs", "watch", "no-such-job")
    assert unknown.returncode == 2
    assert_one_line_error(unknown, "no-such-job", "not found")


def test_jobs_cancel_cancels_a_queued_job_and_names_the_os_user(
    tracker: Tracker, database_url: str
) -> None:
    [job] = added(tracker, NewJob(kind="export", owner="A"))

    done = jobtrail(database_url, "jobs", "cancel", job.id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"cancelled {job.id}"
    assert tracker.get(job.id).status is Status.CANCELLED
    assert [e.actor for e in tracker.events(job.id) if e.type == "cancelled"] == [ACTOR]

    again = jobtrail(database_url, "jobs", "cancel", job.id)
    assert again.returncode == 1
    assert_one_line_error(again, "cancelled")


def test_jobs_retry_failed_items_queues_a_job_that_points_at_the_old_one(
    tracker: Tracker, database_url: str
) -> None:
    old = partial_job(tracker)

    new = json_of(database_url, "jobs", "retry", old, "--failed-items")
    assert (new["retry_of"], new["status"], new["trigger"]) == (old, "queued", "retry")
    assert tracker.get(new["id"]).retry_of == old
    [note] = [e for e in tracker.events(old) if e.type == "log"]
    assert note.message == f"retried as {new['id']} (failed items only)"
    assert note.actor == ACTOR


def test_stats_json_matches_the_trackers_stats(tracker: Tracker, database_url: str) -> None:
    partial_job(tracker)
    with tracker.track("export", owner="B"):
        pass
    added(tracker, NewJob(kind="export", owner="A"), NewJob(kind="import", owner="B"))

    assert json_of(database_url, "stats") == pydantic_core.to_jsonable_python(tracker.stats())
    narrowed = json_of(database_url, "stats", "--days", "7", "--kind", "export", "--owner", "B")
    expected = tracker.stats(days=7, kind="export", owner="B")
    assert narrowed == pydantic_core.to_jsonable_python(expected)
    assert narrowed["total_jobs"] == 1


def test_submit_queues_a_kind_registered_in_the_app_and_refuses_unknown_ones(
    tracker: Tracker, database_url: str
) -> None:
    payload = '{"name": "Ada"}'
    job = json_of(
        database_url, "submit", "greet", "--payload", payload, "--app", APP, "--key", "k1"
    )
    assert (job["kind"], job["status"], job["payload"]) == ("greet", "queued", {"name": "Ada"})
    assert tracker.get(job["id"]).key == "k1"

    unknown = jobtrail(database_url, "submit", "nope", "--app", APP)
    assert unknown.returncode == 1
    assert_one_line_error(unknown, "unknown job kind 'nope'", "greet")
    no_app = jobtrail(database_url, "submit", "greet", "--payload", payload)
    assert no_app.returncode == 2
    assert "--app" in no_app.stderr


HOSTILE = "\x1b]0;pwned\x07\x1b[31mred\x1b[0m \x9b2J\x1bPdcs\x1b\\ \r\x08\u202eevil"
"""Terminal control in a job's fields: a title change (OSC), colours (CSI), a C1 CSI, a DCS
string, carriage return, backspace and a right-to-left override."""


def hostile_job(tracker: Tracker) -> str:
    """A finished job carrying ``HOSTILE`` in every text field a person reads."""
    with tracker.track(f"kind{HOSTILE}", owner=f"owner{HOSTILE}", total=2) as ctx:
        ctx.progress(10, f"message{HOSTILE}")
        ctx.flush()
        ctx.log(f"log{HOSTILE}")
        for row in ctx.items([f"item{HOSTILE}", "fine"]):
            with ctx.item(row):
                if row != "fine":
                    raise ValueError(f"error{HOSTILE}")
        ctx.progress(90, f"last{HOSTILE}")
    job, _ = tracker.add(
        NewJob("remote", payload={"p": HOSTILE}, status=Status.RUNNING, message=HOSTILE)
    )
    tracker.report(job.id, {"result": {"r": HOSTILE}, "error_message": HOSTILE}, Status.FAILED)
    return ctx.job_id


def test_jobs_ls_and_show_never_print_terminal_control_from_job_fields(
    tracker: Tracker, database_url: str
) -> None:
    tracked = hostile_job(tracker)
    remote = tracker.list(kind="remote").jobs[0].id

    outputs = [
        jobtrail(database_url, "jobs", "ls"),
        jobtrail(database_url, "jobs", "show", tracked),
        jobtrail(database_url, "jobs", "show", remote),
    ]

    for done in outputs:
        assert done.returncode == 0, done.stderr
        for control in ("\x1b", "\x9b", "\x07", "\r", "\x08", "\u202e"):
            assert control not in done.stdout, (control, done.stdout)
        # JSON (payload, result) shows the escapes as text (\\u001b), which a terminal prints.
        assert "]0;pwned" not in done.stdout.replace("\\u001b]0;pwned", "")
    shown = outputs[1].stdout
    assert "Failed items (1)" in shown
    assert "red 2J" in shown  # the words stay, only the control is gone
    assert shown.count("Traceback") <= 1


def test_tokens_create_refuses_an_empty_owner_in_one_line(
    tracker: Tracker, database_url: str
) -> None:
    for owner in ("", "   "):
        done = jobtrail(database_url, "tokens", "create", "--name", "blank", "--owner", owner)
        assert done.returncode == 1
        assert done.stdout == ""
        assert_one_line_error(done, "invalid owner", "must not be empty")
    assert tracker.ops.tokens() == []


# -- no store: the commands that read or change jobs create none ----------------------------

READERS = [("jobs", "ls"), ("stats",), ("schedules",)]
CHANGERS = [
    ("jobs", "show", "j1"),
    ("jobs", "watch", "j1"),
    ("jobs", "cancel", "j1"),
    ("jobs", "retry", "j1"),
    ("tokens", "ls"),
    ("tokens", "revoke", "ops"),
]


def assert_no_store_at(done: subprocess.CompletedProcess[str], path: Path) -> None:
    """The command said in one line that there is no store at ``path`` and how to name one."""
    assert done.returncode == 1, done.stderr
    hint = ("--database-url", "JOBTRAIL_DATABASE_URL", "`jobtrail db upgrade`")
    assert_one_line_error(done, f"Error: no jobtrail store at {path};", *hint)


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_read_commands_in_an_empty_folder_name_the_missing_store_and_create_none(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    done = jobtrail(None, *command, cwd=tmp_path)
    assert_no_store_at(done, tmp_path / "jobtrail.db")
    assert "at a server with --url" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", READERS + CHANGERS, ids=" ".join)
def test_commands_on_a_missing_sqlite_file_name_it_and_create_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    missing = tmp_path / "missing.db"
    done = jobtrail(f"sqlite:///{missing}", *command)
    assert_no_store_at(done, missing)
    assert ("--url" in done.stderr) is (command[0] != "tokens")  # tokens have no --url
    assert list(tmp_path.iterdir()) == []


def test_read_commands_never_create_the_schema_of_an_empty_database(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    url = f"sqlite:///{empty}"

    for command in READERS:
        done = jobtrail(url, *command)
        assert done.returncode == 1, done.stderr
        assert_one_line_error(done, "no jobtrail schema", "jobtrail db upgrade")
    with pytest.raises(SchemaError):
        Tracker(url, auto_migrate=False).open()


# -- through a server -------------------------------------------------------------------------


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """The base URL of a real ``jobtrail serve`` (API only, no worker) on the test's store."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [JOBTRAIL, "serve", "--app", APP, "--port", str(port), "--no-worker"],
            cwd=REPO,
            env=environment(database_url),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def alive() -> None:
        assert process.poll() is None, log.read_text(errors="replace")

    try:
        until_answers(f"{url}/api/v1/health", what="jobtrail serve to answer /health", alive=alive)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_same_commands_work_against_a_server_with_url_and_token(
    tracker: Tracker, database_url: str, server: str
) -> None:
    admin = tracker.ops.create_token("ops")
    alice = tracker.ops.create_token("alice", "A")
    mine, theirs = added(tracker, NewJob(kind="export", owner="A"), NewJob(kind="export"))
    as_admin = ("--url", server, "--token", admin)

    # The store URL in the environment is ignored once --url is given.
    assert listed(database_url, *as_admin) == {mine.id, theirs.id}
    assert listed(database_url, "--owner", "A", *as_admin) == {mine.id}
    assert listed(database_url, "--url", server, "--token", alice) == {mine.id}

    with held_job(tracker, fail=False) as job:
        code, screen = watch_until_it_ends(database_url, job, *as_admin)
    assert code == 0, screen
    assert f"✔ {job.id} succeeded" in screen
    finished = jobtrail(database_url, "jobs", "watch", job.id, "--json", *as_admin)
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["status"] == "succeeded"

    hidden = jobtrail(database_url, "jobs", "watch", theirs.id, "--url", server, "--token", alice)
    assert hidden.returncode == 2
    assert_one_line_error(hidden, "not found")
    submitted = json_of(database_url, "submit", "greet", "--payload", '{"name": "Bo"}', *as_admin)
    assert (submitted["status"], submitted["trigger"]) == ("queued", "manual")
    assert [e.actor for e in tracker.events(submitted["id"])] == ["ops"]

    refused = jobtrail(database_url, "jobs", "ls", "--url", server, "--token", "jt_forged")
    assert refused.returncode == 1
    assert_one_line_error(refused, "refused the token")


def test_schedules_print_one_shape_from_the_store_and_from_a_server(
    database_url: str, server: str
) -> None:
    start = datetime(2024, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    now = [start]
    with Tracker(database_url, clock=lambda: now[0]) as tracker:

        @tracker.job("beat")
        def beat(ctx: Context) -> None:
            pass

        tracker.schedule("pulse", "beat", every=60, owner="ops")
        scheduler = Scheduler.of(tracker.runtime, "test-scheduler")
        scheduler.register()
        now[0] = start + timedelta(minutes=3)
        scheduler.tick()
        admin = tracker.ops.create_token("ops")

    [pulse] = json_of(database_url, "schedules")
    assert (pulse["name"], pulse["kind"], pulse["every_seconds"]) == ("pulse", "beat", 60)
    assert [run["outcome"] for run in pulse["recent_runs"]] == ["fired", "missed", "missed"]
    assert {run["schedule"] for run in pulse["recent_runs"]} == {"pulse"}
    assert json_of(database_url, "schedules", "--url", server, "--token", admin) == [pulse]

    table = jobtrail(database_url, "schedules")
    assert table.returncode == 0, table.stderr
    assert "every 1m 00s" in table.stdout
    assert "fired missed missed" in table.stdout
