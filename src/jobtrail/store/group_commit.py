"""GroupCommit: runs the small writes of many threads in shared transactions, one commit each."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import Retrying

from jobtrail.exceptions import StoreError
from jobtrail.store.statements import RawSession

if TYPE_CHECKING:
    from jobtrail.store.database import Database

T = TypeVar("T")
Write = Callable[[RawSession], Any]

MAX_GROUP = 256


class GroupCommit:
    """A thread that gathers pending writes and commits them together.

    Each write is still its own compare-and-set statement with its own result; only the
    commit is shared. If a shared transaction fails, its writes are retried one by one, so
    one bad write cannot take the others down with it.
    """

    def __init__(self, database: Database, retrying: Callable[[], Retrying]) -> None:
        self._database = database
        self._retrying = retrying
        self._pending: list[tuple[Write, Future[Any]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="jobtrail-commit")
        self._thread.start()

    def run(self, write: Callable[[RawSession], T]) -> T:
        """Run ``write`` in the next shared transaction and return its result."""
        return self.submit(write).result()

    def submit(self, write: Callable[[RawSession], T]) -> Future[T]:
        """Queue ``write`` for the next shared transaction; its future settles after commit."""
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise StoreError("the store's group commit is closed")
            self._pending.append((write, future))
            self._cond.notify()
        return future

    def close(self) -> None:
        """Commit what is pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    return
                group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            self._commit(group)

    def _commit(self, group: list[tuple[Write, Future[Any]]]) -> None:
        results: list[Any] = []
        try:
            with self._database.raw(write=True) as session:
                results = [write(session) for write, _ in group]
        except BaseException:
            if len(group) == 1:
                self._settle_alone(group[0])
            else:
                for entry in group:
                    self._settle_alone(entry)
            return
        for (_, future), result in zip(group, results, strict=True):
            future.set_result(result)

    def _settle_alone(self, entry: tuple[Write, Future[Any]]) -> None:
        """Run one write in its own transaction, retrying through a database outage so that
        a job's outcome is not lost to a restart."""
        write, future = entry

        def attempt() -> Any:
            with self._database.raw(write=True) as session:
                return write(session)

        try:
            result = self._retrying()(attempt)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
