"""Dramatiq with the Redis broker and the Results middleware."""

from __future__ import annotations

from importlib.metadata import version

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage
from dramatiq.results import ResultFailure, ResultMissing, Results
from dramatiq.results.backends.redis import RedisBackend

from bench.peers.harness import EXECUTORS, python_command
from bench.peers.redis_peer import DONE, URL, RedisPeer, client, noop

dramatiq_results = RedisBackend(url=URL)
dramatiq_broker = RedisBroker(url=URL)
dramatiq_broker.add_middleware(Results(backend=dramatiq_results))
dramatiq_broker.add_middleware(CurrentMessage())
dramatiq.set_broker(dramatiq_broker)


@dramatiq.actor(actor_name="noop", store_results=True, max_retries=0)
def dramatiq_noop(owner: str | None = None, progress: int = 0, fail: bool = False) -> None:
    message = CurrentMessage.get_current_message()
    key = f"progress:{message.message_id if message else ''}"

    def report(n: int) -> None:
        client.set(key, n)

    try:
        noop(owner, progress, fail, report)
    finally:
        client.incr(DONE)


class DramatiqPeer(RedisPeer):
    name = "Dramatiq"
    version = version("dramatiq")
    settings = (
        f"`dramatiq --processes 1 --threads {EXECUTORS}`, Redis broker, the Results middleware "
        "on Redis (`store_results`), no retries; progress by a Redis `SET` (it has no API)"
    )

    def worker_commands(self) -> list[list[str]]:
        return [
            python_command(
                "dramatiq", "bench.peers.dramatiq_peer",
                "--processes", "1", "--threads", str(EXECUTORS),
            )
        ]  # fmt: skip

    def submit(self, owner: str | None = None, progress: int = 0, fail: bool = False) -> object:
        return dramatiq_noop.send(owner=owner, progress=progress, fail=fail)

    def finished(self, handle: object) -> bool:
        assert isinstance(handle, dramatiq.Message)
        try:
            handle.get_result(backend=dramatiq_results)
        except ResultMissing:
            return False
        except ResultFailure:
            return True
        return True

    def done(self) -> int:
        return int(client.get(DONE) or 0)
