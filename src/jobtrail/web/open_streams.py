"""The SSE and WebSocket streams open in this process: counted per caller, capped, released
however they end, and ended when their token is revoked."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import AsyncIterator

from anyio import to_thread
from fastapi import HTTPException
from fastapi.responses import StreamingResponse
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from jobtrail.exceptions import StoreError
from jobtrail.web.auth import Admission, Gate

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class OpenStreams:
    """How many streams each caller (token, or address without one) has open; a caller at
    ``cap`` gets a 429 for the next one."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        """Streams open now, of every caller."""
        with self._lock:
            return sum(self._open.values())

    def reserve(self, key: str) -> Slot:
        """A slot for one more stream of ``key``; a 429 if it has ``cap`` open already."""
        with self._lock:
            if self._open[key] >= self.cap:
                raise HTTPException(
                    429,
                    f"too many open streams for this caller (limit {self.cap}); close one",
                    headers={"Retry-After": "5"},
                )
            self._open[key] += 1
        return Slot(self, key)

    def _release(self, key: str) -> None:
        with self._lock:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]


class Slot:
    """One open stream's place in ``OpenStreams``; released once, whichever way it ends."""

    def __init__(self, streams: OpenStreams, key: str) -> None:
        self._streams = streams
        self._key = key
        self._released = False

    def release(self) -> None:
        """Give the place back (again is a no-op)."""
        if not self._released:
            self._released = True
            self._streams._release(self._key)


class Recheck:
    """Asks the gate again, at most every ``interval`` seconds, whether a stream's token is
    still accepted, so a revoked token's streams end."""

    def __init__(
        self, gate: Gate, conn: HTTPConnection, admission: Admission, interval: float
    ) -> None:
        self._gate = gate
        self._conn = conn
        self._admission = admission
        self._interval = interval
        self._next = time.monotonic() + interval

    async def allowed(self) -> bool:
        """False once the token is no longer accepted (checked when the interval is up). While
        the store cannot answer, the token stands: the stream sends nothing then anyway, and
        the check is made again an interval later."""
        now = time.monotonic()
        if now < self._next:
            return True
        self._next = now + self._interval
        try:
            return await to_thread.run_sync(self._gate.still_admitted, self._conn, self._admission)
        except StoreError:
            return True


class HeldStream(StreamingResponse):
    """A ``text/event-stream`` response that holds a slot until it ends, is cut off by its
    client, or is cancelled, and then closes its events."""

    def __init__(self, events: AsyncIterator[bytes], slot: Slot) -> None:
        super().__init__(events, media_type="text/event-stream", headers=_HEADERS)
        self._events = events
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slot.release()
            close = getattr(self._events, "aclose", None)
            if close is not None:
                await close()
