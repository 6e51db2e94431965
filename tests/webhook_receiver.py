"""A real webhook receiver on 127.0.0.1 for tests: it verifies every request with the
Standard Webhooks library, records what it got, and answers as a test scripts it (a status,
a slow answer, a closed connection)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

CLOSE = -1
"""A scripted answer: close the connection without answering."""


FAST: dict[str, Any] = {
    "flush_interval": 0.05,
    "webhook_allow_private": True,  # the receiver listens on loopback
    "webhook_poll_interval": 0.1,
    "webhook_backoff": 0.05,
    "webhook_timeout": 1.0,
}
"""Settings of a tracker that may send webhooks to a test's receiver, polling and retrying
quickly."""


@dataclass(frozen=True)
class Received:
    """One request: its headers, its body parsed, and which secrets verified it."""

    headers: dict[str, str]
    body: dict[str, Any]
    verified_by: tuple[str, ...]
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def type(self) -> str:
        return str(self.body["type"])

    @property
    def job_id(self) -> str:
        return str(self.body["data"]["job"]["id"])


@dataclass
class Receiver:
    """What the server shares with its handler threads."""

    secrets: list[str] = field(default_factory=list)
    answers: deque[int] = field(default_factory=deque)
    """Scripted statuses, used up in order (``CLOSE`` closes); then ``status``."""
    status: int = 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    unverified: int = 0
    """Requests no secret verified (never expected)."""
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(default_factory=threading.Condition)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def accepted(self) -> list[Received]:
        """What was answered 2xx, in arrival order."""
        with self.lock:
            return list(self.received)

    def wait_for(self, done: Callable[[list[Received]], bool], timeout: float = 8.0) -> bool:
        """Wait until ``done(accepted())`` holds (True), or ``timeout`` seconds (False)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not done(self.accepted()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True

    def _answer(self) -> int:
        with self.lock:
            self.attempts += 1
            return self.answers.popleft() if self.answers else self.status

    def _record(self, headers: dict[str, str], raw: bytes) -> None:
        verified = tuple(s for s in self.secrets if _verifies(s, raw, headers))
        with self.lock:
            if not verified:
                self.unverified += 1
            self.received.append(Received(headers, json.loads(raw), verified))
        with self.changed:
            self.changed.notify_all()


def _verifies(secret: str, raw: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(raw, headers)
    except WebhookVerificationError:
        return False
    return True


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            answer = receiver._answer()
            if receiver.delay:
                time.sleep(receiver.delay)
            if answer == CLOSE:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if 200 <= answer < 300:
                receiver._record({k.lower(): v for k, v in self.headers.items()}, raw)
            self.send_response(answer)
            body = b"ok" if answer < 300 else b"x" * 5000  # an answer longer than 1 KiB
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # what a receiver in another process got (the benchmark)
            got = receiver.accepted()
            body = json.dumps({"accepted": len(got), "distinct": len({r.id for r in got})})
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serving(receiver: Receiver | None = None, port: int = 0) -> Iterator[Receiver]:
    """``receiver`` (a new one by default) served on 127.0.0.1 until the block ends."""
    receiver = receiver or Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main() -> None:
    """Serve a receiver that verifies with the secrets given as arguments, print its URL, and
    stop when standard input closes (``bench/webhooks.py`` runs it in its own process)."""
    import sys

    with serving(Receiver(secrets=sys.argv[1:])) as receiver:
        print(receiver.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
