"""Real receivers of alert notifications on 127.0.0.1: an SMTP server (aiosmtpd) and an HTTP
server taking apprise's ``json://`` posts; each keeps what it received."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import free_port

SMTP_PASSWORD = "smtp-Pa55-s3cret"
JSON_PASSWORD = "json-Pa55-s3cret"


@dataclass
class Received:
    """Messages received, in order, with their arrival times (``time.monotonic``)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def add(self, item: dict[str, Any]) -> None:
        with self._changed:
            self.items.append(item)
            self.arrived.append(time.monotonic())
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The first ``count`` messages, once they arrived; AssertionError after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.items) >= count, timeout):
                raise AssertionError(f"{len(self.items)} messages received, expected {count}")
            return list(self.items[:count])


@dataclass
class MailReceiver:
    """An SMTP server taking any login (over plain SMTP: loopback only)."""

    port: int
    received: Received

    def url(self) -> str:
        return (
            f"mailto://alerts:{SMTP_PASSWORD}@127.0.0.1:{self.port}"
            "?from=alerts@example.com&to=oncall@example.com&mode=insecure"
        )


@contextmanager
def mail_receiver() -> Iterator[MailReceiver]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    received = Received()

    class Handler:
        async def handle_DATA(  # noqa: N802  # the name aiosmtpd calls
            self, server: Any, session: Any, envelope: Any
        ) -> str:
            mail: Message = message_from_bytes(envelope.content)
            body = _text(mail)
            received.add({"subject": mail["Subject"], "to": envelope.rcpt_tos, "body": body})
            return "250 OK"

    def accept(*args: Any) -> AuthResult:
        return AuthResult(success=True)

    port = free_port()
    controller = Controller(
        Handler(), hostname="127.0.0.1", port=port, auth_require_tls=False, authenticator=accept
    )
    controller.start()
    try:
        yield MailReceiver(port, received)
    finally:
        controller.stop()


def _text(mail: Message) -> str:
    for part in mail.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            return payload.decode() if isinstance(payload, bytes) else str(payload)
    return ""


@dataclass
class JsonReceiver:
    """An HTTP server receiving apprise's JSON posts; ``failing`` answers 500 meanwhile."""

    port: int
    received: Received
    failing: bool = False

    def url(self) -> str:
        return f"json://hook:{JSON_PASSWORD}@127.0.0.1:{self.port}/alerts"


@contextmanager
def json_receiver() -> Iterator[JsonReceiver]:
    receiver = JsonReceiver(free_port(), Received())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if receiver.failing:
                self.send_response(500)
                self.end_headers()
                return
            receiver.received.add({"path": self.path, **json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
