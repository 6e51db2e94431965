"""Handlers of the API tests' app: a quick one, one with items, and one that runs until
cancelled."""

from __future__ import annotations

import time

from jobtrail import Context, Tracker


def register(tracker: Tracker) -> Tracker:
    """Register the API tests' kinds on ``tracker``."""

    @tracker.job("greet")
    def greet(ctx: Context, name: str) -> dict[str, str]:
        """Say hello, reporting half-way progress first."""
        ctx.progress(50, f"greeting {name}")
        return {"greeting": f"hello {name}"}

    @tracker.job("batch")
    def batch(ctx: Context, items: list[str], failing: list[str] | None = None) -> int:
        """Process ``items``; the ones listed in ``failing`` raise."""
        for item in ctx.items(items):
            with ctx.item(item):
                if item in (failing or []):
                    raise ValueError(f"item {item} is broken")
        return len(items)

    @tracker.job("hold")
    def hold(ctx: Context, seconds: float = 30.0) -> None:
        """Run until cancelled (checked every 10 ms), or for ``seconds`` at most."""
        ctx.progress(0, "holding")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ctx.check()
            time.sleep(0.01)

    return tracker
