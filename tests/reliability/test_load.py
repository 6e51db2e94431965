"""Load on a real ``jobtrail serve`` with its worker: 200 jobs/s with 10 progress reports each,
50 polling clients, 20 SSE and 20 WebSocket clients that connect and drop.

Figures (p50/p99 of submit, read and SSE delay; the server's memory, file descriptors, sockets
and idle CPU before and after) are printed and appended to ``load-report.txt`` in the pytest
temporary directory; only correctness and boundedness are asserted.
``JOBTRAIL_SOAK_SECONDS`` sets how long the load runs (``make soak``: 30 minutes).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from jobtrail import Status, Tracker
from tests.reliability.harness import (
    SOAK_SECONDS,
    Processes,
    Served,
    budget,
    client_connections,
    cpu_seconds,
    every_job_ended_once,
    open_fds,
    open_files,
    percentile,
    rss_kib,
    wait_until_ended,
)

LOAD_SECONDS = SOAK_SECONDS or 30.0
"""The issue asks for 60 s in ``make test``; 30 s per dialect keeps the suite under ten
minutes on two cores (``JOBTRAIL_SOAK_SECONDS`` runs it longer)."""
JOBS_PER_SECOND = 200
POLLERS = 50
POLL_EVERY = 0.5
SSE_CLIENTS = 20
WS_CLIENTS = 20
CLIENT_TIMEOUT = 30.0
"""Seconds a client waits for an answer; longer counts as an error (a hang)."""
SETTLE_SECONDS = 8.0
"""How long the server gets to notice its clients left before the figures are read."""


@dataclass
class Figures:
    """What the clients measured and every error they met."""

    submit: list[float] = field(default_factory=list)
    read: list[float] = field(default_factory=list)
    sse_delay: list[float] = field(default_factory=list)
    ws_messages: int = 0
    streams_opened: int = 0
    errors: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)

    def error(self, what: str, problem: object) -> None:
        self.errors.append(f"{what}: {problem}"[:300])


@dataclass
class Server:
    """The served app's figures read from /proc, and the tokens its clients use."""

    served: Served
    admin: str
    stream_tokens: list[str]

    @property
    def pid(self) -> int:
        return self.served.process.pid

    def snapshot(self, idle_seconds: float) -> dict[str, float]:
        """The server's memory, descriptors, client connections, streams and idle CPU."""
        before = cpu_seconds(self.pid)
        time.sleep(idle_seconds)
        idle = (cpu_seconds(self.pid) - before) / idle_seconds
        files = open_files(self.pid)
        store = sum(n for name, n in files.items() if ".db" in name)
        port = int(self.served.base_url.rsplit(":", 1)[1])
        return {
            "rss_mib": rss_kib(self.pid) / 1024,
            "fds": open_fds(self.pid),
            "store_fds": store,
            "other_fds": open_fds(self.pid) - store - files["socket"],
            "client_connections": client_connections(self.pid, port),
            "idle_cpu": idle,
            "open_streams": self.open_streams(),
        }

    def open_streams(self) -> float:
        """The server's own count of open streams (``jobtrail_open_streams``), or NaN."""
        headers = {"Authorization": f"Bearer {self.admin}"}
        text = httpx.get(f"{self.served.api}/metrics", headers=headers, timeout=10).text
        values = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("jobtrail_open_streams") and not line.startswith("#")
        ]
        return sum(values) if values else float("nan")


async def timed(
    figures: list[float], what: str, errors: Figures, call: Awaitable[httpx.Response]
) -> httpx.Response | None:
    """Await ``call``, note its latency in ``figures``; an error or a non-2xx is an error."""
    started = time.perf_counter()
    try:
        response = await call
    except httpx.HTTPError as exc:
        errors.error(what, f"{type(exc).__name__} {exc}")
        return None
    figures.append(time.perf_counter() - started)
    if not response.is_success:
        errors.error(what, f"{response.status_code} {response.text[:200]}")
        return None
    return response


async def submitter(client: httpx.AsyncClient, figures: Figures, until: float) -> None:
    """POST /jobs at JOBS_PER_SECOND, at most 64 in flight."""
    slots = asyncio.Semaphore(64)
    tasks: set[asyncio.Task[None]] = set()
    start, sent = time.monotonic(), 0
    body = {"kind": "load", "payload": {"reports": 10}}

    async def one() -> None:
        async with slots:
            answer = await timed(figures.submit, "submit", figures, client.post("/jobs", json=body))
        if answer is not None:
            figures.job_ids.append(answer.json()["job_id"])

    while time.monotonic() < until:
        due = int((time.monotonic() - start) * JOBS_PER_SECOND)
        for _ in range(due - sent):
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent = max(sent, due)
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)


async def poller(client: httpx.AsyncClient, figures: Figures, until: float) -> None:
    """Read a recent job every POLL_EVERY seconds, and a page of jobs every fifth time."""
    await asyncio.sleep(random.uniform(0, POLL_EVERY))
    n = 0
    while time.monotonic() < until:
        if figures.job_ids:
            job_id = random.choice(figures.job_ids[-500:])
            await timed(figures.read, "read", figures, client.get(f"/jobs/{job_id}"))
        if n % 5 == 0:
            await timed(figures.read, "list", figures, client.get("/jobs", params={"limit": 20}))
        n += 1
        await asyncio.sleep(POLL_EVERY)


async def sse_client(client: httpx.AsyncClient, token: str, figures: Figures, until: float) -> None:
    """Follow /stream for 2–5 s, drop the connection, and connect again, until ``until``."""
    headers = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < until:
        stay = min(random.uniform(2, 5), until - time.monotonic())
        try:
            async with client.stream("GET", "/stream", headers=headers) as response:
                if response.status_code != 200:
                    figures.error("sse", f"{response.status_code} {await response.aread()!r}")
                    await asyncio.sleep(1)
                    continue
                figures.streams_opened += 1
                await asyncio.wait_for(read_sse(response, figures), timeout=max(stay, 0.1))
        except TimeoutError:
            pass  # stayed as long as it meant to; the connection drops here
        except httpx.HTTPError as exc:
            figures.error("sse", f"{type(exc).__name__} {exc}")


async def read_sse(response: httpx.Response, figures: Figures) -> None:
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            job = json.loads(line[5:])
            changed = datetime.fromisoformat(job["updated_at"])
            figures.sse_delay.append((datetime.now(UTC) - changed).total_seconds())


async def ws_client(
    ws_url: str, token: str, matching: bool, figures: Figures, until: float
) -> None:
    """Listen on /ws for 2–5 s (every change, or a filter nothing matches), close, repeat."""
    url = ws_url if matching else f"{ws_url}?kind=nothing-matches"
    headers = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < until:
        stay = min(random.uniform(2, 5), until - time.monotonic())
        try:
            async with connect(url, additional_headers=headers, open_timeout=CLIENT_TIMEOUT) as ws:
                figures.streams_opened += 1
                deadline = time.monotonic() + stay
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        await asyncio.wait_for(ws.recv(), timeout=left)
                    except TimeoutError:
                        break
                    figures.ws_messages += 1
        except Exception as exc:  # any failure to connect or read is an error of the run
            figures.error("ws", f"{type(exc).__name__} {exc}")
            await asyncio.sleep(1)


async def load(server: Server, seconds: float) -> Figures:
    figures = Figures()
    until = time.monotonic() + seconds
    api = server.served.api
    # Idle connections are dropped before the server's 5 s keep-alive ends, so a request never
    # goes out on a connection the server is closing.
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=100, keepalive_expiry=2)
    async with (
        httpx.AsyncClient(
            base_url=api,
            headers={"Authorization": f"Bearer {server.admin}"},
            timeout=CLIENT_TIMEOUT,
            limits=limits,
        ) as client,
        httpx.AsyncClient(base_url=api, timeout=CLIENT_TIMEOUT, limits=limits) as streams,
    ):
        tokens = server.stream_tokens
        ws_url = api.replace("http://", "ws://") + "/ws"
        work: list[Callable[[], Awaitable[None]]] = [
            lambda: submitter(client, figures, until),
            *[lambda: poller(client, figures, until)] * POLLERS,
            *[lambda t=t: sse_client(streams, t, figures, until) for t in tokens[:SSE_CLIENTS]],
            *[
                lambda t=t, n=n: ws_client(ws_url, t, n % 2 == 0, figures, until)
                for n, t in enumerate(tokens[SSE_CLIENTS:])
            ],
        ]
        await asyncio.gather(*(start() for start in work))
    return figures


def report(
    path: Path,
    dialect: str,
    figures: Figures,
    before: dict[str, float],
    after: dict[str, float],
    seconds: float,
) -> str:
    def ms(values: list[float], share: float) -> str:
        return f"{percentile(values, share) * 1000:.1f} ms"

    lines = [
        f"load on {dialect}: {seconds:.0f} s, {len(figures.job_ids)} jobs submitted "
        f"({len(figures.job_ids) / seconds:.0f}/s), {len(figures.read)} reads, "
        f"{figures.streams_opened} streams opened, {figures.ws_messages} WebSocket messages, "
        f"{len(figures.errors)} errors",
        f"  submit    p50 {ms(figures.submit, 0.5)}  p99 {ms(figures.submit, 0.99)}",
        f"  read      p50 {ms(figures.read, 0.5)}  p99 {ms(figures.read, 0.99)}",
        f"  SSE delay p50 {ms(figures.sse_delay, 0.5)}  p99 {ms(figures.sse_delay, 0.99)}"
        f"  ({len(figures.sse_delay)} events)",
        "  server    " + "  ".join(f"{k} {before[k]:.2f} → {after[k]:.2f}" for k in before),
    ]
    text = "\n".join(lines)
    with path.open("a") as out:
        out.write(text + "\n")
    return text


@pytest.mark.timeout(budget(240))
def test_load_of_200_jobs_a_second_with_pollers_and_streams_makes_no_error_and_leaks_nothing(
    tracker: Tracker,
    processes: Processes,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    served = processes.serve(
        JOBTRAIL_RATE_LIMIT="1000000/second",
        JOBTRAIL_FLUSH_INTERVAL="0.25",
        JOBTRAIL_HEARTBEAT_INTERVAL="10",
        JOBTRAIL_HEARTBEAT_TIMEOUT="60",
        JOBTRAIL_POLL_INTERVAL="0.5",
    )
    server = Server(
        served,
        tracker.ops.create_token("load-admin", None),
        [tracker.ops.create_token(f"stream-{n}", None) for n in range(SSE_CLIENTS + WS_CLIENTS)],
    )
    time.sleep(2)  # the worker's first claims, the first requests' imports
    before = server.snapshot(idle_seconds=5)

    figures = asyncio.run(load(server, LOAD_SECONDS))
    wait_until_ended(tracker, figures.job_ids, timeout=budget(120))
    time.sleep(SETTLE_SECONDS)
    after = server.snapshot(idle_seconds=5)

    dialect = database_url.split(":")[0].split("+")[0]
    text = report(
        tmp_path_factory.getbasetemp() / "load-report.txt",
        dialect,
        figures,
        before,
        after,
        LOAD_SECONDS,
    )
    print("\n" + text)

    assert figures.errors == [], f"{len(figures.errors)} errors:\n" + "\n".join(figures.errors[:20])
    assert len(figures.job_ids) >= 0.9 * JOBS_PER_SECOND * LOAD_SECONDS, "the load fell short"
    problems = every_job_ended_once(tracker, figures.job_ids)
    assert problems == [], "\n".join(problems[:20])
    assert tracker.list(kind="load", status=Status.SUCCEEDED).total_count == len(figures.job_ids)
    # Bounded: memory, descriptors, sockets and work all come back once the clients leave.
    assert after["rss_mib"] < 2 * before["rss_mib"] + 50, (before, after)
    assert after["client_connections"] == 0, (before, after)
    assert after["other_fds"] <= before["other_fds"] + 5, (before, after)
    # SQLite keeps a closed connection's descriptors while the file is locked by others and
    # reuses them: bounded by the pool (10 connections + 40 overflow, 3 files each).
    assert after["store_fds"] <= 150, (before, after)
    assert after["idle_cpu"] <= before["idle_cpu"] + 0.05, (
        "the server keeps working for clients that left"
    )
    if after["open_streams"] == after["open_streams"]:  # the server counts its streams
        assert after["open_streams"] == before["open_streams"], (before, after)


# -- bursts ------------------------------------------------------------------------------------

BURST = 1200
"""Jobs changed at once in each burst: more than the streams' page (500) and the queue watch's
batch (1,000)."""
FOLLOWERS = 3
"""SSE clients, and as many WebSocket clients, following every change through the bursts."""


@dataclass
class Follower:
    """What one stream client saw: each job's statuses, and every change in arrival order."""

    statuses: dict[str, set[str]] = field(default_factory=dict)
    changes: list[tuple[str, str]] = field(default_factory=list)

    def saw(self, job: dict[str, str]) -> None:
        self.statuses.setdefault(job["id"], set()).add(job["status"])
        self.changes.append((job["updated_at"], job["id"]))

    def reached(self, ids: set[str], status: str) -> bool:
        return all(status in self.statuses.get(job_id, ()) for job_id in ids)


async def follow_sse(api: str, token: str, follower: Follower, ready: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=api, headers=headers, timeout=CLIENT_TIMEOUT) as client,
        client.stream("GET", "/stream") as response,
    ):
        ready.set()
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                follower.saw(json.loads(line[5:]))


async def follow_ws(api: str, token: str, follower: Follower, ready: asyncio.Event) -> None:
    url = api.replace("http://", "ws://") + "/ws"
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(url, additional_headers=headers, open_timeout=CLIENT_TIMEOUT) as ws:
        ready.set()
        async for message in ws:
            follower.saw(json.loads(message))


async def through_bursts(served: Served, token: str, app: Tracker) -> list[Follower]:
    """Open the streams, then three bursts of ``BURST`` changes: a submit_many, the queue
    watch parking them all (no worker consumes), a bulk cancel of them all."""
    followers = [Follower() for _ in range(2 * FOLLOWERS)]
    ready = [asyncio.Event() for _ in followers]
    tasks = [
        asyncio.create_task(follow(served.api, token, f, r))
        for follow, f, r in zip(
            [follow_sse] * FOLLOWERS + [follow_ws] * FOLLOWERS, followers, ready, strict=True
        )
    ]
    try:
        await asyncio.gather(*(r.wait() for r in ready))
        await asyncio.sleep(0.5)  # each stream has read its starting point
        jobs = await asyncio.to_thread(app.submit_many, "load", [{"reports": 1}] * BURST)
        ids = {job.id for job in jobs}
        await until_all(followers, tasks, ids, "waiting")
        for chunk in (sorted(ids)[:1000], sorted(ids)[1000:]):
            await asyncio.to_thread(app.bulk, "cancel", chunk, actor="load")
        await until_all(followers, tasks, ids, "cancelled")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return followers


async def until_all(
    followers: list[Follower], tasks: list[asyncio.Task[None]], ids: set[str], status: str
) -> None:
    deadline = time.monotonic() + budget(90)
    while not all(f.reached(ids, status) for f in followers):
        ended = [t for t in tasks if t.done()]
        assert not ended, f"a stream ended: {[t.exception() for t in ended]}"
        behind = [sum(status in f.statuses.get(i, ()) for i in ids) for f in followers]
        assert time.monotonic() < deadline, f"jobs seen {status} per client: {behind}"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(budget(240))
def test_bursts_of_over_a_thousand_changes_reach_every_open_stream_whole_and_in_order(
    app: Tracker, processes: Processes
) -> None:
    served = processes.serve("--no-worker", JOBTRAIL_HEARTBEAT_INTERVAL="0.5")
    token = app.ops.create_token("bursts", None)

    started = time.monotonic()
    followers = asyncio.run(through_bursts(served, token, app))
    took = time.monotonic() - started
    before = cpu_seconds(served.process.pid)
    time.sleep(3)
    idle = (cpu_seconds(served.process.pid) - before) / 3

    print(f"\n3 bursts of {BURST} changes to {len(followers)} streams in {took:.1f} s; "
          f"then {idle:.1%} of a core idle")  # fmt: skip
    for follower in followers:
        # Each job's changes in order, each once (jobs changed by different writers at once
        # need not arrive in the order of their clocks: a commit can land late).
        per_job: dict[str, list[str]] = {}
        for updated_at, job_id in follower.changes:
            per_job.setdefault(job_id, []).append(updated_at)
        assert all(times == sorted(set(times)) for times in per_job.values())
    assert idle < 0.15, f"the server spins after the bursts: {idle:.0%} of a core"
