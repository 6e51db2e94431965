"""Settings: arguments are validated exactly like the environment, by name, and 0 is a value;
a missing extra is one line naming what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobtrail import Context, Settings, Tracker
from jobtrail.exceptions import JobtrailError, MissingExtra, SettingsError, UnknownSetting
from jobtrail.extras import EXTRAS, require
from jobtrail.states import Status


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def test_a_misspelt_option_is_refused_by_name_before_any_store_is_made(tmp_path: Path) -> None:
    with pytest.raises(UnknownSetting) as raised:
        Tracker(sqlite(tmp_path), flush_intervall=0.05)
    assert "'flush_intervall'" in str(raised.value)
    assert "did you mean 'flush_interval'" in str(raised.value)
    assert isinstance(raised.value, TypeError)
    assert not (tmp_path / "jobs.db").exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [("heartbeat_interval", -5), ("concurrency", "many"), ("flush_interval", -0.1)],
)
def test_an_invalid_option_is_refused_naming_it_and_its_value(
    tmp_path: Path, option: str, value: object
) -> None:
    overrides: dict[str, Any] = {option: value}
    with pytest.raises(SettingsError) as raised:
        Tracker(sqlite(tmp_path), **overrides)
    assert raised.value.name == option
    assert f"{option}={value!r}" in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, JobtrailError)


def test_the_environment_is_validated_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBTRAIL_CONCURRENCY", "many")
    with pytest.raises(SettingsError, match="concurrency"):
        Tracker(sqlite(tmp_path))


def test_arguments_override_given_settings_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBTRAIL_GRACE_PERIOD", "12")
    base = Settings(flush_interval=2.0)
    with Tracker(sqlite(tmp_path), settings=base, heartbeat_interval=3) as tracker:
        assert tracker.settings.flush_interval == 2.0
        assert tracker.settings.heartbeat_interval == 3.0
        assert tracker.settings.grace_period == 12.0
    with Tracker(sqlite(tmp_path)) as tracker:
        assert tracker.settings.grace_period == 12.0


def test_zero_is_a_value_for_a_worker_not_unset(tmp_path: Path) -> None:
    with Tracker(sqlite(tmp_path), grace_period=30) as tracker:
        assert tracker.worker(grace_period=0).options.grace_period == 0
        assert tracker.worker().options.grace_period == 30
        with pytest.raises(SettingsError, match="concurrency=0"):
            tracker.worker(concurrency=0)
        with pytest.raises(SettingsError, match="heartbeat_interval"):
            tracker.worker(heartbeat_interval=0)


def test_zero_days_of_retention_purges_a_job_that_just_succeeded(tmp_path: Path) -> None:
    with Tracker(sqlite(tmp_path)) as tracker:

        @tracker.job("quick")
        def quick(ctx: Context) -> None: ...

        job = tracker.submit("quick")
        with tracker.worker(1, poll_interval=0.01):
            assert tracker.wait(job.id, timeout=20).status is Status.SUCCEEDED
        assert tracker.purge() == 0  # the default keeps it for days
        assert tracker.purge(succeeded_days=0, max_days=0) == 1
        assert tracker.list().total_count == 0
        with pytest.raises(SettingsError, match="retention_other_days"):
            tracker.purge(other_days=-1)
        assert tracker.stats().jobs_by_status == {"succeeded": 1}


def test_a_missing_extra_is_one_line_naming_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(EXTRAS, "web", ("jobtrail_no_such_module",))
    with pytest.raises(MissingExtra) as raised:
        require("web", "jobtrail serve")
    message = str(raised.value)
    assert message.splitlines() == [message]
    assert "jobtrail serve" in message
    assert "pip install 'jobtrail[web]'" in message
    assert isinstance(raised.value, ImportError)


@pytest.mark.parametrize(
    ("blocked", "code", "extra"),
    [
        ("celery", "import jobtrail.integrations.celery", "celery"),
        ("httpx", "import jobtrail.integrations.ratelimit", "ratelimit"),
        (
            "psycopg",
            "import jobtrail; jobtrail.Tracker('postgresql://u@127.0.0.1:9/x')",
            "postgres",
        ),
    ],
)
def test_using_a_part_without_its_extra_says_which_extra(
    blocked: str, code: str, extra: str
) -> None:
    script = f"import sys\nsys.modules[{blocked!r}] = None\n{code}\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("jobtrail.exceptions.MissingExtra:"), done.stderr
    assert f"pip install 'jobtrail[{extra}]'" in last
