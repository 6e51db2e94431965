"""Handlers for the worker-process tests; the payload drives what each one does.

Each handler appends a line to the ``log`` file it is given (one ``write`` with ``O_APPEND``,
so lines from several processes never interleave), which is how a test sees what ran where.
"""

from __future__ import annotations

import os
import signal
import time

from jobtrail import Context, Tracker


def append_line(path: str, *words: object) -> None:
    """Append one line to ``path`` atomically, even with other processes writing to it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (" ".join(str(w) for w in words) + "\n").encode())
    finally:
        os.close(fd)


def die() -> None:
    """End this worker process at once, as a power cut or the OOM killer would."""
    os.kill(os.getpid(), signal.SIGKILL)


def register(tracker: Tracker) -> Tracker:
    """Register the test kinds on ``tracker`` (the test process registers them too, to submit)."""

    @tracker.job("noop")
    def noop(ctx: Context, log: str) -> None:
        append_line(log, "ran", ctx.job_id, ctx.attempt, os.getpid())

    @tracker.job("steps", max_attempts=2)
    def steps(
        ctx: Context, log: str, count: int, delay: float, die_on_attempt: int = 0, die_at: int = 0
    ) -> int:
        """``count`` items of ``delay`` seconds; SIGKILL its own process at item ``die_at`` of
        attempt ``die_on_attempt``."""
        append_line(log, "start", ctx.job_id, ctx.attempt, os.getpid())
        for step in ctx.items(range(count)):
            with ctx.item(step):
                if ctx.attempt == die_on_attempt and step == die_at:
                    die()
                append_line(log, "begin", step)
                time.sleep(delay)
                append_line(log, "end", step)
        return count

    @tracker.job("doomed", max_attempts=2)
    def doomed(ctx: Context, log: str) -> None:
        """Kill whichever worker runs it, every time."""
        append_line(log, "start", ctx.job_id, ctx.attempt, os.getpid())
        die()

    @tracker.job("quiet")
    def quiet(ctx: Context, log: str, seconds: float) -> int:
        """Work for ``seconds`` without reporting any progress."""
        append_line(log, "start", ctx.job_id, ctx.attempt, os.getpid())
        time.sleep(seconds)
        append_line(log, "end", ctx.job_id, ctx.attempt, os.getpid())
        return ctx.attempt

    @tracker.job("hello")
    def hello(ctx: Context) -> None:
        """Submitted when a worker starts, if asked: tells a test the worker is up."""

    return tracker
