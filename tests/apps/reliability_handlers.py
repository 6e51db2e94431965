"""Handlers of the reliability suite: short jobs that report progress, a job to freeze, a job
to race, a job that hands odd values to every reporting call, and the load test's job.

Each handler that a test must observe appends a line to the ``log`` file it is given (one
``write`` with ``O_APPEND``, so lines from several processes never interleave).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from jobtrail import Context, Tracker
from tests.apps.handlers import append_line


def deep(levels: int) -> Any:
    """A list nested ``levels`` deep."""
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


ODD_VALUES: dict[str, Any] = {
    "nul": "before\x00after",
    "lone_high_surrogate": "x\ud800y",
    "lone_low_surrogate": "\udfff",
    "terminal_escapes": "\x1b[2J\x1b[31mred\x1b]0;pwned\x07\x1b[0m\x9b6n",
    "control_characters": "".join(chr(n) for n in range(1, 32)) + "\x7f",
    "bidi_override": "\u202etxt.exe",
    "ten_megabytes": "x" * 10_000_000,
    "huge_float": 1e309,
    "nan": float("nan"),
    "negative_infinity": float("-inf"),
    "huge_int": 2**70,
    "deep_nesting": deep(10_000),
    "nul_in_key": {"k\x00": "v"},
    "surrogate_in_key": {"\udcff": "v"},
}
"""Values no well-behaved caller sends, by name: the handlers and the tests share them."""


def _message(ctx: Context, value: Any) -> None:
    ctx.progress(50, value if isinstance(value, str) else repr(value)[:100])


def _item(ctx: Context, value: Any) -> None:
    with ctx.item(value):
        pass


def _failed_item(ctx: Context, value: Any) -> None:
    with ctx.item(value):
        raise ValueError(value)


def _exception(ctx: Context, value: Any) -> None:
    raise RuntimeError(value)


ODD_REPORTS: dict[str, Callable[[Context, Any], None]] = {
    "message": _message,
    "data": lambda ctx, value: ctx.progress(50, "data", odd=value),
    "item": _item,
    "failed_item": _failed_item,
    "log": lambda ctx, value: ctx.log(value if isinstance(value, str) else "odd", odd=value),
    "exception": _exception,
}
"""The reporting calls a running job makes, each handed an odd value (``result``: returned)."""


def register(tracker: Tracker) -> Tracker:
    """Register the reliability kinds on ``tracker`` (tests register them too, to submit)."""
    _register_faults(tracker)
    _register_probes(tracker)
    return tracker


def _register_faults(tracker: Tracker) -> None:
    """The kinds the kill, freeze and outage tests run."""

    @tracker.job("work", max_attempts=5)
    def work(ctx: Context, items: int = 10, delay: float = 0.01, log: str | None = None) -> Any:
        """``items`` short items, a progress message each; returns the attempt that ran it."""
        if log:
            append_line(log, "start", ctx.job_id, ctx.attempt, os.getpid())
        for n in ctx.items(range(items)):
            with ctx.item(n):
                ctx.progress(message=f"item {n + 1} of {items}", step=n)
                time.sleep(delay)
        if log:
            append_line(log, "end", ctx.job_id, ctx.attempt, os.getpid())
        return {"attempt": ctx.attempt, "pid": os.getpid()}

    @tracker.job("freeze", max_attempts=3)
    def freeze(ctx: Context, log: str, hold: float, report_late: bool = False) -> Any:
        """Attempt 1 reports, then works ``hold`` seconds without a checkpoint (the test
        freezes the process then), then reports again if ``report_late``; later attempts
        finish at once. Returns the attempt that ran it."""
        ctx.progress(10, f"attempt {ctx.attempt} began")
        ctx.flush()
        append_line(log, "start", ctx.job_id, ctx.attempt, os.getpid())
        if ctx.attempt == 1:
            time.sleep(hold)
            append_line(log, "woke", ctx.job_id, ctx.attempt, os.getpid())
            if report_late:
                ctx.progress(90, f"attempt {ctx.attempt} reports late", late=True)
        append_line(log, "end", ctx.job_id, ctx.attempt, os.getpid())
        return {"attempt": ctx.attempt, "pid": os.getpid()}


def _register_probes(tracker: Tracker) -> None:
    """The kinds the race, odd-input and load tests run."""

    @tracker.job("race")
    def race(ctx: Context, until: float) -> Any:
        """Check for a cancel every few milliseconds until the wall clock reaches ``until``,
        then succeed."""
        while time.time() < until:
            ctx.check()
            time.sleep(0.002)
        return {"by": "handler"}

    @tracker.job("odd")
    def odd(ctx: Context, case: str, where: str) -> Any:
        """Hand the odd value named ``case`` to the reporting call named ``where``."""
        value = ODD_VALUES[case]
        if where == "result":
            return value
        ODD_REPORTS[where](ctx, value)
        return {"where": where}

    @tracker.job("load")
    def load(ctx: Context, reports: int = 10) -> Any:
        """Report ``reports`` steps of progress, each with its own message."""
        for n in range(reports):
            ctx.progress((n + 1) * 100 / reports, f"step {n + 1} of {reports}")
        return {"reports": reports}
