"""SQLite at its limits: many writers in several processes, a full disk and a read-only store.

The full disk and the read-only store are real: a small tmpfs mounted for the test, remounted
read-only (tests run as root, who ignores file modes). Where mounting is impossible the two
tests skip locally and fail in CI.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from jobtrail import Job, JobtrailError, Status, Tracker
from tests.apps.reliability_handlers import register
from tests.reliability.harness import REPO, budget, every_job_ended_once, scaled

WRITER_PROCESSES = 2
THREADS_PER_PROCESS = 8


def writers(url: str, rounds: int) -> list[subprocess.Popen[str]]:
    """Start the writer processes; their threads begin together two seconds from now."""
    start_at = f"{time.time() + 2:.3f}"
    argv = [sys.executable, "-m", "tests.apps.sqlite_writers", url]
    return [
        subprocess.Popen(
            [*argv, str(THREADS_PER_PROCESS), str(rounds), start_at],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WRITER_PROCESSES)
    ]


@pytest.mark.timeout(budget(240))
def test_sixteen_writer_threads_in_two_processes_never_see_database_is_locked(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    with Tracker(url):
        pass  # created and migrated once, before the writers race
    rounds = scaled(20)
    reports = []
    processes = writers(url, rounds)
    # Both processes' pipes are read at once: one left unread would fill and stall its writes.
    with ThreadPoolExecutor(len(processes)) as pool:
        answers = list(pool.map(lambda p: p.communicate(timeout=budget(200)), processes))
    for process, (out, err) in zip(processes, answers, strict=True):
        assert process.returncode == 0, err[-3000:]
        reports += [json.loads(line) for line in out.splitlines()]

    assert len(reports) == WRITER_PROCESSES * THREADS_PER_PROCESS
    errors = [error for report in reports for error in report["errors"]]
    locked = [error for error in errors if "locked" in error or "busy" in error]
    assert locked == [], f"{len(locked)} writes saw a locked database: {locked[:5]}"
    assert errors == [], errors[:5]
    assert {report["rounds"] for report in reports} == {rounds}

    with Tracker(url) as tracker:
        expected = WRITER_PROCESSES * THREADS_PER_PROCESS * rounds
        page = {
            kind: tracker.list(kind=kind, limit=1).total_count
            for kind in ("work", "in_place", "external")
        }
        assert page == {"work": expected, "in_place": expected, "external": expected}
        ended = [j.id for kind in page for j in _all(tracker, kind)]
        assert every_job_ended_once(tracker, ended) == []
        statuses = {j.status for j in _all(tracker, "in_place")} | {
            j.status for j in _all(tracker, "external")
        }
        assert statuses == {Status.SUCCEEDED}


def _all(tracker: Tracker, kind: str) -> list[Job]:
    """Every job of ``kind``, page by page."""
    found: list[Job] = []
    while True:
        page = tracker.list(kind=kind, limit=1000, offset=len(found))
        found += page.jobs
        if len(found) >= page.total_count or not page.jobs:
            return found


# -- a full disk and a read-only store --------------------------------------------------------


def mount(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *argv], capture_output=True, text=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test (unmounted after it)."""
    where = tmp_path / "disk"
    where.mkdir()
    done = mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where))
    if done.returncode != 0:
        message = f"cannot mount a tmpfs here: {done.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield where
    finally:
        mount("-o", "remount,rw,size=64m", str(where))
        subprocess.run(["umount", "-l", str(where)], check=False)


def intact(path: Path, ids: list[str]) -> None:
    """The database file passes SQLite's integrity check and holds every one of ``ids``."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {row[0] for row in conn.execute("SELECT id FROM jobs")}
    assert set(ids) <= stored


def test_a_full_disk_is_a_clear_error_and_the_rows_written_before_stay_intact(
    small_disk: Path,
) -> None:
    path = small_disk / "full.db"
    written: list[str] = []
    with Tracker(f"sqlite:///{path}") as tracker:
        register(tracker)
        with pytest.raises(JobtrailError) as refused:  # noqa: PT012 - fill it, then one more
            for n in range(100_000):
                job = tracker.submit("work", {"items": 1}, key=f"k{n}", labels={"note": "x" * 2000})
                written.append(job.id)
        message = str(refused.value).lower()
        assert "full" in message, message
        assert len(written) > 10
        assert tracker.get(written[-1]).status is Status.QUEUED  # reads still work

        assert mount("-o", "remount,size=64m", str(small_disk)).returncode == 0
        after = tracker.submit("work", {"items": 1}, key="after")  # and writes resume
        assert tracker.get(after.id).key == "after"
    intact(path, [*written, after.id])


def test_a_read_only_store_is_a_clear_error_and_its_rows_stay_intact(small_disk: Path) -> None:
    path = small_disk / "frozen.db"
    url = f"sqlite:///{path}"
    with Tracker(url) as tracker:
        register(tracker)
        written = [job.id for job in tracker.submit_many("work", [{"items": 1}] * 50)]
    done = mount("-o", "remount,ro", str(small_disk))
    assert done.returncode == 0, done.stderr

    with pytest.raises(JobtrailError) as refused, Tracker(url) as tracker:  # opening may refuse
        register(tracker).submit("work", {"items": 1})
    message = str(refused.value).lower()
    assert "read" in message, message
    assert "only" in message or "readonly" in message, message

    assert mount("-o", "remount,rw", str(small_disk)).returncode == 0
    intact(path, written)
    with Tracker(url) as tracker:
        assert {tracker.get(job_id).status for job_id in written} == {Status.QUEUED}
