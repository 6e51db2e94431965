"""The shipped Prometheus alerting rules (docs/prometheus/): valid for promtool, each seen firing
and staying quiet in promtool's unit tests, over metrics and labels jobtrail's /metrics serves."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from jobtrail import Context, Tracker
from jobtrail.scheduler import Scheduler
from jobtrail.web import create_app
from tests.clock import FakeClock
from tests.rows import force
from tests.servers import require
from tests.web.client import API, TESTCLIENT_WARNING, Api, open_client

pytestmark = TESTCLIENT_WARNING

RULES_DIR = Path(__file__).parents[1] / "docs" / "prometheus"
RULES = RULES_DIR / "jobtrail-alerts.yml"
RULE_TESTS = RULES_DIR / "jobtrail-alerts.test.yml"
SCRAPE_LABELS = {"job", "instance"}
"""The labels Prometheus adds to every series it scrapes."""
SERIES = re.compile(r"^(\w+)\{(.*)\}$")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _yaml(RULES)["groups"] for rule in group["rules"]]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """promtool (from Debian's ``prometheus`` package: scripts/system-deps.sh installs it)."""
    tool = require("promtool", shutil.which("promtool"))
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=60, check=False, cwd=RULES_DIR
    )


def test_the_shipped_rules_are_valid_prometheus_alerting_rules() -> None:
    checked = _promtool("check", "rules", RULES.name)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in checked.stdout


def test_the_shipped_rules_pass_their_promtool_unit_tests() -> None:
    tested = _promtool("test", "rules", RULE_TESTS.name)

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_rule_is_tested_both_firing_and_staying_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in _yaml(RULE_TESTS)["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])

    alerts = {rule["alert"] for rule in _rules()}
    assert len(alerts) == len(_rules())
    assert fired == alerts
    assert quiet == alerts


def test_the_rules_and_their_tests_name_only_metrics_and_labels_jobtrail_serves(
    tmp_path: Path,
) -> None:
    served = _served(f"sqlite:///{tmp_path / 'jobtrail.db'}")

    watched = {name for rule in _rules() for name in re.findall(r"\bjobtrail_\w+", rule["expr"])}
    assert watched <= set(served), watched - set(served)
    assert "jobtrail_schedule_late_seconds" in watched
    for case in _yaml(RULE_TESTS)["tests"]:
        for series in case["input_series"]:
            match = SERIES.match(series["series"])
            assert match is not None, series
            name, labels = match.group(1), set(re.findall(r'(\w+)="', match.group(2)))
            assert name in served, name
            assert labels - SCRAPE_LABELS == served[name], series["series"]


def _served(database_url: str) -> dict[str, set[str]]:
    """Every sample name of a real scrape with each of them present, and its label names."""
    with (
        Tracker(database_url) as tracker,
        open_client(create_app(tracker, run_worker=False)) as client,
    ):

        @tracker.job("listing_sync", stall_after=60, timeout=600)
        def listing_sync(ctx: Context) -> None:
            raise RuntimeError("upstream said no")

        tracker.schedule("nightly_sync", "listing_sync", cron="0 3 * * *")
        failed = listing_sync.submit()
        tracker.worker(1).run(burst=True)  # runs it, and stores the schedule
        assert tracker.get(failed.id).status == "failed"
        stuck = listing_sync.submit()
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        # As a stuck worker leaves it: running an hour, stalled, past its timeout.
        force(tracker, stuck.id, status="running", stalled=True, started_at=an_hour_ago)
        api = Api.with_tokens(tracker, client)
        text = client.get(f"{API}/metrics", headers=api.admin).text
    served: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            served.setdefault(sample.name, set()).update(sample.labels)
    return served


# -- the rules over jobtrail's own scrapes ---------------------------------------------------

Scrape = dict[str, float]
"""One scrape's samples by series (``name{label="value",…}``, with the scrape's labels)."""


def test_every_rule_fires_on_a_real_scrape_of_its_condition(
    database_url: str, tmp_path: Path
) -> None:
    scrapes = _a_bad_quarter_hour(database_url)
    stuck = {
        "JobtrailJobStalled",
        "JobtrailJobOverdue",
        "JobtrailQueueUnconsumed",
        "JobtrailQueueBacklog",
    }
    failing = {"JobtrailJobFailed", "JobtrailKindFailureRate", "JobtrailScheduleLate"}
    expected = {
        "3m": set(),  # the first failure, in Prometheus' first 10 minutes: quiet
        "6m": {"JobtrailJobStalled"},  # the others are not past their thresholds yet
        "9m": stuck,
        "13m": stuck | failing | {"JobtrailWorkerLost"},
    }
    assert expected["13m"] == {rule["alert"] for rule in _rules()}
    tests = tmp_path / "scraped.test.yml"
    tests.write_text(yaml.safe_dump(_promtool_test(scrapes, expected)))

    tested = _promtool("test", "rules", str(tests))

    assert tested.returncode == 0, tested.stdout + tested.stderr


def _a_bad_quarter_hour(database_url: str) -> list[Scrape]:
    """A real store scraped once a minute for 14 minutes while things go wrong: a job parked
    on a queue no worker consumes (minute 1), one queued on a queue nobody runs (2), a job
    stalled and past its timeout (4), failures (3 and 11), a schedule's slot due at 12:10 and
    never ticked, a worker lost (13)."""
    clock = FakeClock()  # 12:00
    with (
        Tracker(database_url, clock=clock, metrics_public=True) as tracker,
        open_client(create_app(tracker, run_worker=False)) as client,
    ):
        steps = _steps(tracker)
        Scheduler.of(tracker.runtime, "ticker").register()
        scrapes = []
        for minute in range(14):
            steps.get(minute, lambda: None)()
            scrapes.append(_scrape(client.get(f"{API}/metrics").text))
            clock.advance(60)
    return scrapes


def _steps(tracker: Tracker) -> dict[int, Callable[[], None]]:
    """What happens at which minute, on ``tracker``'s kinds and its one schedule."""

    @tracker.job("render", queue="gpu")
    def render(ctx: Context) -> None: ...

    @tracker.job("export", queue="batch")
    def export(ctx: Context) -> None: ...

    @tracker.job("media_sync", stall_after=60, timeout=120)
    def media_sync(ctx: Context) -> None: ...

    @tracker.job("orphan", max_attempts=2)
    def orphan(ctx: Context) -> None: ...

    tracker.schedule("nightly_sync", "export", every=600)

    def park() -> None:
        render.submit()
        tracker.ops.watch_queues()  # no live worker: parked

    def queue() -> None:
        export.submit()  # on a queue no one runs, and no queue watch parks it

    def stall() -> None:  # as a stuck worker leaves it
        job = media_sync.submit()
        force(tracker, job.id, status="running", stalled=True, started_at=tracker.now())

    def lose() -> None:
        an_hour_ago = tracker.now() - timedelta(hours=1)
        job = orphan.submit()
        force(tracker, job.id, status="running", lease="lost", heartbeat_at=an_hour_ago)
        assert [j.status for j in tracker.store.expiry.rescue(60)] == ["queued"]

    return {
        1: park,
        2: queue,
        3: lambda: _sync(tracker, succeeded=1, failed=1),
        4: stall,
        11: lambda: _sync(tracker, succeeded=9, failed=4),
        13: lose,
    }


def _sync(tracker: Tracker, *, succeeded: int, failed: int) -> None:
    """Track ``listing_sync`` runs in place, the last ``failed`` of them failing."""
    for n in range(succeeded + failed):
        with contextlib.suppress(RuntimeError), tracker.track("listing_sync"):
            if n >= succeeded:
                raise RuntimeError("upstream said no")


def _scrape(text: str) -> Scrape:
    scrape: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {**sample.labels, "job": "jobtrail", "instance": "jobtrail:8000"}
            inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            scrape[f"{sample.name}{{{inner}}}"] = sample.value
    return scrape


def _promtool_test(scrapes: list[Scrape], firing: dict[str, set[str]]) -> dict[str, Any]:
    """A promtool test of the shipped rules over ``scrapes`` (one a minute; ``_`` where a
    series was absent), expecting exactly the alerts ``firing`` at each time."""
    names = sorted({name for scrape in scrapes for name in scrape})
    series = [
        {"series": name, "values": " ".join(_value(scrape.get(name)) for scrape in scrapes)}
        for name in names
    ]
    checks = [
        {
            "expr": 'group by (alertname) (ALERTS{alertstate="firing"})',
            "eval_time": at,
            "exp_samples": [{"labels": f'{{alertname="{a}"}}', "value": 1} for a in sorted(alerts)],
        }
        for at, alerts in firing.items()
    ]
    return {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": checks}],
    }


def _value(value: float | None) -> str:
    return "_" if value is None else repr(value)
