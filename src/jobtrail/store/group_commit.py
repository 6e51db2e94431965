"""Commits shared between threads: one write-behind queue per database.

``GroupCommit`` is the thread that runs many threads' small writes in shared transactions,
one commit each. ``Commits`` decides when it runs: while a worker asked for shared commits
(``start_grouping``), and on demand for writes deferred by this process (the ``queued``
records of published Celery tasks), which every read of the same database waits for first,
so a process always reads what it wrote.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import Retrying

from jobtrail.exceptions import InvalidData, StoreError
from jobtrail.logs import logger
from jobtrail.store.statements import RawSession

if TYPE_CHECKING:
    from jobtrail.store.database import Database

T = TypeVar("T")
Write = Callable[[RawSession], Any]

MAX_GROUP = 256
"""The most queued writes one shared transaction runs."""
LINGER = 1.0
"""Seconds an idle commit thread started on demand waits for more work before it stops."""
TICK = 0.1
"""How often an idle commit thread looks whether the main thread ended (its cue to stop)."""


@dataclass(frozen=True)
class Batched:
    """One item of a write that runs once for all its items queued in the same transaction
    (e.g. many published records inserted by one prepared statement run as a batch)."""

    write: Callable[[RawSession, list[Any]], object]
    item: Any

    def __call__(self, session: RawSession) -> object:
        """Run this item alone."""
        return self.write(session, [self.item])


class GroupCommit:
    """A thread that gathers pending writes and commits them together.

    Each write is still its own compare-and-set statement with its own result; only the
    commit is shared. If a shared transaction fails, its writes are retried one by one, so
    one bad write cannot take the others down with it. While ``held()`` is false, the thread
    stops after ``LINGER`` idle seconds, and at once when idle after the main thread ended (it
    is no daemon: what is queued is written before the process exits).
    """

    def __init__(
        self, database: Database, retrying: Callable[[], Retrying], held: Callable[[], bool]
    ) -> None:
        self._database = database
        self._retrying = retrying
        self._held = held
        self._pending: list[tuple[Write, Future[Any]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="jobtrail-commit")
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        """The committing thread."""
        return self._thread

    def run(self, write: Callable[[RawSession], T]) -> T:
        """Run ``write`` in the next shared transaction and return its result."""
        future = self.submit(write)
        if future is None:
            raise StoreError("the store's group commit is closed")
        return future.result()

    def submit(self, write: Callable[[RawSession], T]) -> Future[T] | None:
        """Queue ``write`` for the next shared transaction (its future settles after commit);
        None once this thread has stopped taking writes."""
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                return None
            self._pending.append((write, future))
            self._cond.notify()
        return future

    def close(self) -> None:
        """Commit what is pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._wait_for_work():
                    self._closed = True
                    return
                group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            self._commit(group)

    def _wait_for_work(self) -> bool:
        """Wait (``_cond`` held) until writes are pending; False once it is time to stop."""
        idle = 0.0
        while not self._pending:
            if self._closed or not threading.main_thread().is_alive():
                return False
            if not self._held():
                if idle >= LINGER:
                    return False
                idle += TICK
            self._cond.wait(TICK)
        return True

    def _commit(self, group: list[tuple[Write, Future[Any]]]) -> None:
        try:
            with self._database.raw(write=True) as session:
                results = _run_group(session, [write for write, _ in group])
        except BaseException:
            for entry in group:
                self._settle_alone(entry)
            return
        for (_, future), result in zip(group, results, strict=True):
            future.set_result(result)

    def _settle_alone(self, entry: tuple[Write, Future[Any]]) -> None:
        """Run one write in its own transaction, retrying through a database outage so that
        a job's outcome is not lost to a restart (not once the process is ending: its exit
        must not wait on a database that is gone)."""
        write, future = entry

        def attempt() -> Any:
            with self._database.raw(write=True) as session:
                return write(session)

        try:
            ending = not threading.main_thread().is_alive()
            result = attempt() if ending else self._retrying()(attempt)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)


def _run_group(session: RawSession, writes: list[Write]) -> list[Any]:
    """Run ``writes`` in ``session`` in order; neighbouring items of one ``Batched`` write run
    as one call, whose result each of them gets."""
    results: list[Any] = []
    start = 0
    while start < len(writes):
        first = writes[start]
        if not isinstance(first, Batched):
            results.append(first(session))
            start += 1
            continue
        end = start + 1
        while end < len(writes):
            following = writes[end]
            if not isinstance(following, Batched) or following.write != first.write:
                break
            end += 1
        batch = first.write(session, [w.item for w in writes[start:end] if isinstance(w, Batched)])
        results += [batch] * (end - start)
        start = end
    return results


class Commits:
    """A database's write-behind queue: shared commits while a worker asks for them, and
    writes deferred by this process, landed before any read of the database."""

    def __init__(self, database: Database, retrying: Callable[[], Retrying]) -> None:
        self._database = database
        self._retrying = retrying
        self._group: GroupCommit | None = None
        self._users = 0
        self._lock = threading.Lock()
        self._deferred: dict[str, Future[Any]] = {}

    # -- shared commits, asked for by workers ----------------------------------------------

    def start_grouping(self) -> None:
        """Share commits between threads' small writes until ``stop_grouping`` (workers do)."""
        with self._lock:
            self._users += 1
            self._running()

    def stop_grouping(self) -> None:
        """Undo one ``start_grouping``; the last one commits what is pending and stops the
        thread (writes deferred later start it again)."""
        with self._lock:
            self._users -= 1
            group = self._group if self._users == 0 else None
            if group is not None:
                self._group = None
        if group is not None:
            group.close()

    @property
    def grouping(self) -> bool:
        """Whether a worker asked for shared commits."""
        return self._users > 0

    def _running(self) -> GroupCommit:
        """The commit thread, started if it is not running (call with ``_lock`` held)."""
        group = self._group
        if group is None or not group.thread.is_alive():
            group = self._group = GroupCommit(self._database, self._retrying, self._held)
        return group

    def _held(self) -> bool:
        return self._users > 0

    def _queue(self, write: Callable[[RawSession], T]) -> Future[T]:
        with self._lock:
            future = self._running().submit(write)
            if future is None:  # it stopped between the look and the queueing
                self._group = None
                future = self._running().submit(write)
        assert future is not None
        return future

    def run_write(self, write: Callable[[RawSession], T]) -> T:
        """Run a raw write in its own transaction, or in a shared one while grouping."""
        if self.grouping:
            return self._queue(write).result()
        with self._database.raw(write=True) as session:
            return write(session)

    def run_write_soon(
        self,
        write: Callable[[RawSession], bool],
        what: str,
        fallback: Callable[[InvalidData], Callable[[RawSession], bool]] | None = None,
    ) -> None:
        """Run a raw write without waiting for its commit while grouping (else at once).

        Used for outcomes of jobs a worker ran: the worker goes on to its next job while the
        commit is shared with the others'. A write the database refuses for its values
        (``InvalidData``; it fails alone, the others of its group commit) is replaced by
        ``fallback(error)``'s write. Any other failure is logged; its job, no longer
        heartbeated, is then rescued by the usual rules.
        """
        if not self.grouping:
            try:
                self.run_write(write)
            except InvalidData as exc:
                if fallback is None:
                    raise
                self.run_write(fallback(exc))
            return
        future: Future[bool] = self._queue(write)
        future.add_done_callback(lambda done: self._settled(done, what, fallback))

    def _settled(
        self,
        done: Future[bool],
        what: str,
        fallback: Callable[[InvalidData], Callable[[RawSession], bool]] | None,
    ) -> None:
        """After a write queued by ``run_write_soon``: its fallback, run in its own
        transaction on the commit thread (the group may be closing), or a log line."""
        error = done.exception()
        if isinstance(error, InvalidData) and fallback is not None:
            try:
                with self._database.raw(write=True) as session:
                    fallback(error)(session)
                return
            except Exception as exc:  # logged below, like any lost write
                error = exc
        if error is not None:
            _log_lost(what, error)

    # -- deferred writes, read back by this process -----------------------------------------

    def defer(
        self, keys: Collection[str], write: Batched, landed: Callable[[Future[Any]], object]
    ) -> None:
        """Queue ``write`` for the commit thread without waiting; every read of the database
        waits for it first (``keys``: the ids of the records it writes). ``landed(future)``
        once it committed (the batch's result) or failed for good (its error)."""
        future = self._queue(write)
        with self._lock:
            for key in keys:
                self._deferred[key] = future
        future.add_done_callback(lambda done: self._landed(keys, done, landed))

    def _landed(
        self, keys: Collection[str], done: Future[Any], landed: Callable[[Future[Any]], object]
    ) -> None:
        with self._lock:
            for key in keys:
                if self._deferred.get(key) is done:
                    del self._deferred[key]
        landed(done)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write deferred so far has landed (or failed); False if
        ``timeout`` seconds passed first."""
        with self._lock:
            pending = list(self._deferred.values())
        for future in pending:
            try:
                future.exception(timeout)
            except TimeoutError:
                return False
        return True

    def settle(self) -> None:
        """Before a read: land this process's deferred writes (never on the commit thread,
        which lands them)."""
        if self._deferred:
            group = self._group
            if group is None or threading.current_thread() is not group.thread:
                self.flush()


def _log_lost(what: str, error: BaseException) -> None:
    logger("jobtrail.store").error("a write was lost", what=what, error=str(error))
