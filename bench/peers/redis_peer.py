"""What the peers on Redis share: the server's URL, a client, the job's body and the reset.

The worker processes import these modules too: the URL comes from ``PEERS_REDIS_URL``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import redis

from bench.peers.harness import JobFailed, Peer

URL = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0")
DONE = "peers:done"  # a counter the Celery and Dramatiq jobs bump: neither can count its own
client = redis.Redis.from_url(URL)


def noop(owner: str | None, progress: int, fail: bool, report: Callable[[int], None]) -> None:
    """The job of every Redis peer: ``progress`` reports, then fail when asked."""
    for n in range(progress):
        report(n)
    if fail:
        raise JobFailed(f"job of {owner} asked to fail")


class RedisPeer(Peer):
    """A peer whose jobs live in the Redis server at ``URL`` (the executors are stopped)."""

    def reset(self) -> None:
        client.flushdb()

    def worker_env(self) -> dict[str, str]:
        return {"PEERS_REDIS_URL": URL}
