"""Limiters, retry policies and the httpx transport, against real threads, processes, Redis and
a real local HTTP server."""

from __future__ import annotations

import bisect
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from jobtrail import Cancelled, Event, Status, Tracker
from jobtrail.integrations.ratelimit import (
    LimitedTransport,
    Limiter,
    RateLimitTimeout,
    RetryPolicy,
    WaitStats,
    parse_retry_after,
    wait_stats,
)
from tests.servers import RedisServer, require, start_redis
from tests.web.client import TESTCLIENT_WARNING, open_client

ROOT = Path(__file__).resolve().parents[1]
FAST = RetryPolicy(max_attempts=5, backoff=0.02)


def unique(prefix: str) -> str:
    """A limiter name no other test shares (slots and stats are per name, process-wide)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def busiest(times: list[float], span: float) -> int:
    """The most timestamps that fall within any ``span`` seconds."""
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + span) - i for i, t in enumerate(ordered))


def logs(tracker: Tracker, job_id: str, containing: str) -> list[Event]:
    """The job's ``log`` events whose message contains ``containing``."""
    return [
        e for e in tracker.events(job_id) if e.type == "log" and containing in (e.message or "")
    ]


# -- a scripted HTTP server -----------------------------------------------------------------


class ScriptedServer(ThreadingHTTPServer):
    """Answers with the scripted (status, headers) in turn, then 200; remembers when it was hit."""

    daemon_threads = False

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.script = list(script)
        self.hits: list[float] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def answer(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            self.hits.append(time.monotonic())
            return self.script.pop(0) if self.script else (200, {})


class ScriptedHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, ScriptedServer)
        status, headers = self.server.answer()
        body = f"status {status}".encode()
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(*script: tuple[int, dict[str, str]]) -> Iterator[ScriptedServer]:
    server = ScriptedServer(list(script))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def refused_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# -- limiters -------------------------------------------------------------------------------


def test_importing_jobtrail_leaves_the_rate_limit_integration_unloaded() -> None:
    code = "import sys, jobtrail; print('jobtrail.integrations.ratelimit' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_burst_makes_a_token_bucket_whose_next_call_waits_one_interval() -> None:
    # Before: "10/second, burst 20" was a window of 20 per 2 s, so the 21st call waited 2 s.
    limiter = Limiter(unique("bucket"), "10/second", burst=20)
    assert (limiter.burst, limiter.window) == (20, 2.0)
    assert [limiter.acquire() for _ in range(20)] == [0.0] * 20
    further = [limiter.acquire() for _ in range(5)]
    assert all(0.07 <= w <= 0.2 for w in further), further  # about 1/rate each, not 2 s
    assert limiter.stats().waits == 5


def test_try_acquire_takes_a_free_slot_and_never_waits() -> None:
    limiter = Limiter(unique("try"), "2/minute", burst=2)
    started = time.monotonic()
    assert [limiter.try_acquire() for _ in range(3)] == [True, True, False]
    assert time.monotonic() - started < 0.1
    assert limiter.stats() == WaitStats(acquired=2)
    window = Limiter(unique("try-window"), "1/minute")
    assert (window.try_acquire(), window.try_acquire()) == (True, False)


def test_a_limiter_without_rate_or_storage_takes_them_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBTRAIL_RATELIMIT_DEFAULT_RATE", "3/minute")
    monkeypatch.setenv("JOBTRAIL_RATELIMIT_STORAGE_URL", "memory://")
    limiter = Limiter(unique("settings"))
    assert (limiter.rate, limiter.burst, limiter.window) == ("3/minute", 3, 60.0)
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(("rate", "burst"), [("10/second", 0), ("0/second", None)])
def test_a_rate_or_burst_that_allows_nothing_is_refused(rate: str, burst: int | None) -> None:
    with pytest.raises(ValueError, match=r"at least 1|no requests"):
        Limiter(unique("bad"), rate, burst=burst)


def test_an_in_process_limiter_holds_four_threads_to_its_rate() -> None:
    limiter = Limiter(unique("threads"), "20/second")
    taken: list[float] = []
    deadline = time.monotonic() + 2.5  # windows start at 0, 1 and 2 s: 60 slots

    def contend() -> None:
        while (left := deadline - time.monotonic()) > 0:
            try:
                limiter.acquire(timeout=left)
            except RateLimitTimeout:
                return
            taken.append(time.monotonic())

    threads = [threading.Thread(target=contend) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 54 <= len(taken) <= 66
    assert busiest(taken, 0.9) <= 20
    assert limiter.stats().acquired == len(taken)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = require("redis-server", start_redis())
    yield server
    server.stop()


def test_a_redis_limiter_holds_two_processes_to_one_rate(redis_server: RedisServer) -> None:
    command = [sys.executable, "-m", "tests.apps.limiter_proc", redis_server.url()]
    command += [unique("shared"), "20/second"]
    with ExitStack() as stack:
        procs = [
            stack.enter_context(
                subprocess.Popen(
                    command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
            )
            for _ in range(2)
        ]
        for p in procs:
            stack.callback(p.kill)  # a no-op once it has exited
        assert [p.stdout.readline() if p.stdout else "" for p in procs] == ["ready\n"] * 2
        start = time.time() + 0.2  # both begin together, whenever each finished starting up
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{start} {start + 2.5}\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=30)[0] for p in procs]
    taken = [[float(line) for line in out.split()] for out in outputs]
    assert all(taken), "each process got slots"
    merged = taken[0] + taken[1]
    assert 54 <= len(merged) <= 66  # 20/s over 2.5 s: windows at 0, 1 and 2 s; 120 if unshared
    assert busiest(merged, 0.9) <= 20


def test_a_redis_bucket_is_shared_by_processes_and_counts_their_waits_in_redis(
    redis_server: RedisServer,
) -> None:
    name = unique("shared-bucket")
    code = (
        "import sys; from jobtrail.integrations.ratelimit import Limiter; "
        f"l = Limiter({name!r}, '5/second', burst=2, storage_url=sys.argv[1]); "
        "[l.acquire() for _ in range(5)]"
    )
    started = time.monotonic()
    for p in [subprocess.Popen([sys.executable, "-c", code, redis_server.url()]) for _ in range(2)]:
        assert p.wait(timeout=30) == 0
    # One bucket: 2 at once, the other 8 one per 0.2 s (two unshared ones: 0.6 s each).
    assert time.monotonic() - started >= 1.6
    limiter = Limiter(name, "5/second", burst=2, storage_url=redis_server.url())
    shared = limiter.stats()
    assert shared.acquired == 10
    assert shared.waits >= 5
    assert shared.seconds > 0.5
    assert wait_stats(redis_server.url())[name] == shared
    assert name not in wait_stats()  # not counted as this process's


@TESTCLIENT_WARNING
def test_served_metrics_show_the_waits_other_processes_counted_in_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from jobtrail.web import create_app

    name = unique("elsewhere")
    code = (
        "import sys; from jobtrail.integrations.ratelimit import Limiter; "
        f"l = Limiter({name!r}, '1/second', storage_url=sys.argv[1]); l.acquire(); l.acquire()"
    )
    subprocess.run([sys.executable, "-c", code, redis_server.url()], check=True, timeout=30)
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    with (
        Tracker(url, ratelimit_storage_url=redis_server.url(), metrics_public=True) as tracker,
        open_client(create_app(tracker, run_worker=False)) as client,
    ):
        text = client.get("/api/v1/metrics").text
    samples = {
        (s.name, s.labels.get("limiter")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("jobtrail_ratelimit_waits_total", name)] == 1
    assert samples[("jobtrail_ratelimit_wait_seconds_total", name)] >= 0.9


def test_limiter_waits_are_job_events_and_counted_under_its_name(tracker: Tracker) -> None:
    limiter = Limiter(unique("events"), "5/second")
    with tracker.track("crawl") as ctx:
        gate = limiter.bound(ctx)

        @gate
        def fetch() -> str:
            return "page"

        waits = [gate.acquire() for _ in range(5)]
        with gate as waited:
            waits.append(waited)
        assert fetch() == "page"  # the seventh slot: a window of 5 takes no wait of its own
    assert waits[:5] == [0.0] * 5
    assert 0.9 <= waits[5] <= 1.5
    events = logs(tracker, ctx.job_id, "rate limited")
    assert len(events) == 1
    assert events[0].message is not None
    assert f"{limiter.name!r}, waiting" in events[0].message
    assert isinstance(events[0].data, dict)
    assert events[0].data["limiter"] == limiter.name
    stats = wait_stats()[limiter.name]
    assert stats == limiter.stats()
    assert (stats.acquired, stats.waits) == (7, 1)
    assert stats.seconds == pytest.approx(waits[5], abs=0.01)


def test_a_wait_longer_than_the_timeout_raises_at_once() -> None:
    limiter = Limiter(unique("timeout"), "1/minute")
    limiter.acquire()
    started = time.monotonic()
    with pytest.raises(RateLimitTimeout) as raised:
        limiter.acquire(timeout=5)
    assert time.monotonic() - started < 0.5
    assert raised.value.limiter == limiter.name
    assert limiter.stats() == WaitStats(acquired=1)


def test_a_job_cancelled_while_waiting_for_a_slot_stops_waiting(tracker: Tracker) -> None:
    limiter = Limiter(unique("cancel"), "1/minute")
    jobs: list[str] = []

    def crawl() -> None:
        with tracker.track("crawl") as ctx:
            jobs.append(ctx.job_id)
            limiter.acquire(ctx)
            tracker.cancel(ctx.job_id)
            limiter.acquire(ctx)  # the next slot is a minute away

    started = time.monotonic()
    with pytest.raises(Cancelled):
        crawl()
    assert time.monotonic() - started < 5
    assert tracker.get(jobs[0]).status is Status.CANCELLED


# -- retries --------------------------------------------------------------------------------

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        (format_datetime(NOW + timedelta(seconds=7), usegmt=True), 7.0),
        (format_datetime(NOW - timedelta(seconds=7), usegmt=True), 0.0),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_the_policy_honours_retry_after_and_retries_5xx_until_it_succeeds(
    tracker: Tracker,
) -> None:
    script = [(429, {"Retry-After": "1"}), (503, {}), (503, {})]
    with serving(*script) as server, httpx.Client() as client, tracker.track("fetch") as ctx:
        response = FAST.bound(ctx).call(client.get, server.url)
    assert response.status_code == 200
    assert len(server.hits) == 4
    assert server.hits[1] - server.hits[0] >= 1.0
    events = logs(tracker, ctx.job_id, "retrying in")
    messages = [re.sub(r"in [\d.]+ s", "in N s", e.message or "") for e in events]
    assert messages == [
        "HTTP 429 from 127.0.0.1, retrying in N s (attempt 2 of 5)",
        "HTTP 503 from 127.0.0.1, retrying in N s (attempt 3 of 5)",
        "HTTP 503 from 127.0.0.1, retrying in N s (attempt 4 of 5)",
    ]
    waits = [e.data["wait"] for e in events if isinstance(e.data, dict)]
    assert waits[0] == 1.0  # as Retry-After said
    assert all(isinstance(w, float) and 0 < w < 1 for w in waits[1:])


def test_a_404_is_raised_at_once_without_a_retry() -> None:
    with serving((404, {})) as server, httpx.Client() as client:
        with pytest.raises(httpx.HTTPStatusError) as raised:
            FAST.call(client.get, server.url)
        assert raised.value.response.status_code == 404
        assert len(server.hits) == 1


def test_a_retry_after_longer_than_max_wait_is_raised_at_once() -> None:
    policy = RetryPolicy(max_wait=10)
    with serving((429, {"Retry-After": "3600"})) as server, httpx.Client() as client:
        with pytest.raises(httpx.HTTPStatusError) as raised:
            policy.call(client.get, server.url)
        assert raised.value.response.status_code == 429
        assert len(server.hits) == 1


def test_connection_refused_is_retried_then_raised_after_max_attempts(tracker: Tracker) -> None:
    policy = RetryPolicy(max_attempts=3, backoff=0.02)
    calls: list[float] = []

    @policy
    def fetch(client: httpx.Client, url: str) -> httpx.Response:
        calls.append(time.monotonic())
        return client.get(url)

    with httpx.Client() as client:
        with pytest.raises(httpx.ConnectError):
            fetch(client, refused_url())
        assert len(calls) == 3
        with tracker.track("fetch") as ctx, pytest.raises(httpx.ConnectError):
            policy.bound(ctx).call(client.get, refused_url())
    messages = [e.message for e in logs(tracker, ctx.job_id, "retrying in")]
    assert len(messages) == 2
    assert all(m is not None and m.startswith("ConnectError from 127.0.0.1") for m in messages)


# -- the httpx transport --------------------------------------------------------------------


def test_the_transport_takes_a_slot_per_attempt_and_retries_5xx(tracker: Tracker) -> None:
    limiter = Limiter(unique("transport"), "100/second")
    with serving((503, {}), (502, {})) as server, tracker.track("fetch") as ctx:
        transport = LimitedTransport(limiter, FAST, ctx=ctx)
        with httpx.Client(transport=transport) as client:
            response = client.get(server.url)
    assert (response.status_code, response.text) == (200, "status 200")
    assert limiter.stats().acquired == 3
    assert len(logs(tracker, ctx.job_id, "retrying in")) == 2


def test_the_transport_returns_the_last_error_response_once_attempts_are_spent() -> None:
    policy = RetryPolicy(max_attempts=2, backoff=0.02)
    with (
        serving((503, {}), (500, {}), (404, {})) as server,
        httpx.Client(transport=LimitedTransport(policy=policy)) as client,
    ):
        spent = client.get(server.url)
        not_retried = client.get(server.url)
    assert (spent.status_code, spent.text) == (500, "status 500")
    assert (not_retried.status_code, not_retried.text) == (404, "status 404")
    assert len(server.hits) == 3
