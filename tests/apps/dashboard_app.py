"""The app the dashboard's browser tests serve: kinds that fail items, run long, or crash."""

from __future__ import annotations

import threading

import jobtrail

tracker = jobtrail.Tracker()


@tracker.job("listing_sync")
def listing_sync(ctx: jobtrail.Context, bad: list[str], total: int = 6) -> dict[str, int]:
    """Items named in ``bad`` fail; the result says how many items actually ran."""
    ran = 0
    for item in ctx.items([f"L{n}" for n in range(total)]):
        with ctx.item(item):
            ran += 1
            if item in bad:
                raise ConnectionError(f"upstream refused {item}")
    return {"ran": ran}


@tracker.job("long_job")
def long_job(ctx: jobtrail.Context, steps: int = 600) -> None:
    """Runs until cancelled, reporting a step every 50 ms."""
    ctx.set_total(steps)
    for _ in range(steps):
        ctx.check()
        ctx.advance()
        threading.Event().wait(0.05)


@tracker.job("crash")
def crash(ctx: jobtrail.Context, password: str) -> None:
    """Always raises, with a secret in its message that must not reach the page."""
    raise ValueError(f"could not log in with password={password}")
