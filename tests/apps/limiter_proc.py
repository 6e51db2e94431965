"""Take slots of a shared limiter in a loop and print the wall-clock time each one was taken.

``python -m tests.apps.limiter_proc STORAGE_URL NAME RATE`` prints ``ready`` once connected,
then reads ``START STOP`` (Unix times) from stdin, waits until START and takes slots until
STOP, one time per line.
"""

from __future__ import annotations

import sys
import time

from jobtrail.integrations.ratelimit import Limiter, RateLimitTimeout


def main(storage_url: str, name: str, rate: str) -> None:
    """Run one contender for the limiter ``name`` at ``storage_url``."""
    Limiter(f"{name}-warm-up", rate, storage_url=storage_url).acquire()  # connect, load scripts
    limiter = Limiter(name, rate, storage_url=storage_url)
    print("ready", flush=True)
    start, stop = (float(field) for field in sys.stdin.readline().split())
    time.sleep(max(start - time.time(), 0.0))
    taken: list[float] = []
    while (left := stop - time.time()) > 0:
        try:
            limiter.acquire(timeout=left)
        except RateLimitTimeout:
            break
        taken.append(time.time())
    print("\n".join(repr(t) for t in taken), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
