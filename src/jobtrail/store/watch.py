"""Noticing commits at once: doorbells rung by this process's writes, and a watcher that rings
them for other processes' commits (PostgreSQL ``LISTEN``, SQLite ``PRAGMA data_version``).

Idle workers and open streams wait on a doorbell with their poll interval as a timeout, so a
watcher that is down (a PostgreSQL restart) only makes them as slow as polling, never stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from jobtrail.logs import logger

CHANNEL = "jobtrail_changes"
"""The PostgreSQL channel the ``jobs`` triggers notify (migration 0007)."""
SQLITE_WATCH_INTERVAL = 0.002
"""How often the SQLite watcher reads ``data_version``: a counter in shared memory, read
without touching the file (a few microseconds a read, well under 1% of a core idle)."""
SETTLE_SECONDS = 0.05
"""How long the SQLite watcher keeps polling after the log was written."""
RECONNECT_SECONDS = 1.0

log = logger("jobtrail.store")


class Doorbell:
    """A counter waiters compare with: rung, it wakes threads and event loops waiting on it.

    ``then`` is rung with it (the work doorbell rings the changes doorbell: new work is a
    change too)."""

    def __init__(self, then: Doorbell | None = None) -> None:
        self._cond = threading.Condition()
        self._rung = 0
        self._then = then
        self._loops: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}

    @property
    def rung(self) -> int:
        """How many times it rang so far (what ``wait`` compares with)."""
        return self._rung

    def ring(self) -> None:
        """Wake every waiter."""
        with self._cond:
            self._rung += 1
            self._cond.notify_all()
            loops = list(self._loops.items())
        for event, loop in loops:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(event.set)
        if self._then is not None:
            self._then.ring()

    def wait(self, seen: int, timeout: float) -> bool:
        """Return once it rang after ``seen`` was read (True), or after ``timeout`` (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._rung != seen, timeout)

    async def wait_async(self, seen: int, timeout: float) -> bool:
        """``wait`` for an event loop: the loop keeps running while this waits."""
        event = asyncio.Event()
        with self._cond:
            if self._rung != seen:
                return True
            self._loops[event] = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            with self._cond:
                self._loops.pop(event, None)


class Source(Protocol):
    """What a watcher watches: a descriptor that becomes readable when something may have
    changed (None: poll every ``timeout``), and whether something did."""

    fd: int | None

    @property
    def timeout(self) -> float:
        """The longest wait for ``fd`` before asking ``changed`` anyway."""

    def changed(self) -> bool:
        """Consume what made ``fd`` readable; True when a commit happened since last asked."""

    def close(self) -> None:
        """Release the source."""


class Watcher:
    """A daemon thread that rings ``changes`` when another process commits."""

    def __init__(self, name: str, source: Callable[[], Source], changes: Doorbell) -> None:
        self._source = source
        self._changes = changes
        self._wake, self._waker = os.pipe()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; returns once the thread has ended."""
        self._stopping = True
        os.write(self._waker, b"x")
        self._thread.join()
        os.close(self._wake)
        os.close(self._waker)

    def _run(self) -> None:
        while not self._stopping:
            try:
                source = self._source()
            except Exception as exc:  # the database is away: polling covers the gap
                log.debug("change watcher cannot connect", error=str(exc))
                self._sleep(RECONNECT_SECONDS)
                continue
            try:
                self._changes.ring()  # whatever committed while nobody watched
                self._watch(source)
            except Exception as exc:
                log.debug("change watcher reconnecting", error=str(exc))
                self._sleep(RECONNECT_SECONDS)
            finally:
                source.close()

    def _watch(self, source: Source) -> None:
        watched = [self._wake] if source.fd is None else [self._wake, source.fd]
        while not self._stopping:
            ready, _, _ = select.select(watched, [], [], source.timeout)
            if self._wake in ready:
                return
            if source.changed():
                self._changes.ring()

    def _sleep(self, seconds: float) -> None:
        select.select([self._wake], [], [], seconds)


class SQLiteSource:
    """``PRAGMA data_version`` of a connection of its own, read when the write-ahead log was
    written (inotify, on Linux) or every ``SQLITE_WATCH_INTERVAL`` where inotify is missing."""

    def __init__(self, conn: Any, path: str) -> None:
        self._conn = conn
        self._cursor = conn.cursor()
        self._last = self._version()
        self._notify = _wal_notifier(path)
        self.fd = None if self._notify is None else self._notify.fileno()
        self._settling = 0.0

    @property
    def timeout(self) -> float:
        """Without inotify, the poll interval; with it, the same interval for a moment after
        the log was written (a writer appends its frames before it publishes the commit in
        shared memory, so ``data_version`` may move just after the event), else a slow
        check in case the log was replaced."""
        if self._notify is None or time.monotonic() < self._settling:
            return SQLITE_WATCH_INTERVAL
        return 1.0

    def _version(self) -> int:
        return int(self._cursor.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> bool:
        if self._notify is not None and self._notify.read(timeout=0):
            self._settling = time.monotonic() + SETTLE_SECONDS
        version = self._version()
        moved, self._last = version != self._last, version
        return moved

    def close(self) -> None:
        if self._notify is not None:
            self._notify.close()
        self._conn.close()


def _wal_notifier(path: str) -> Any:
    """An inotify watch on ``path``'s write-ahead log, or None where that is not possible."""
    try:
        from inotify_simple import INotify, flags
    except ImportError:  # not Linux
        return None
    notify = INotify()
    try:
        notify.add_watch(path + "-wal", flags.MODIFY)
    except OSError:  # no log yet (nothing written), or inotify refused: poll
        notify.close()
        return None
    return notify


class PostgresSource:
    """``LISTEN`` on a connection of its own (the ``jobs`` triggers notify ``CHANNEL``)."""

    timeout = 30.0
    """A check of the connection now and then, when nothing was notified."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        conn.autocommit = True
        conn.execute(f"LISTEN {CHANNEL}")
        self.fd: int | None = conn.fileno()

    def changed(self) -> bool:
        return any(True for _ in self._conn.notifies(timeout=0))

    def close(self) -> None:
        self._conn.close()
