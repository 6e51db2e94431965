"""Small server-rendered SVG charts for the stats page (no chart library, no build step)."""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT, PAD = 720, 220, 32
COLORS = {
    "queued": "var(--queued)",
    "waiting": "var(--waiting)",
    "running": "var(--running)",
    "succeeded": "var(--succeeded)",
    "partial": "var(--partial)",
    "failed": "var(--failed)",
    "cancelled": "var(--cancelled)",
}


def bar_chart(
    series: dict[str, dict[str, int]], stack: list[str], title: str = "Jobs per day by status"
) -> str:
    """Stacked bars, one per key of ``series`` (e.g. a day or a minute), stacked in ``stack``
    order; a window without any job says so instead."""
    if not any(sum(v.values()) for v in series.values()):
        return '<p class="empty">No jobs in this window.</p>'
    top = max(sum(v.values()) for v in series.values()) or 1
    step = (WIDTH - 2 * PAD) / len(series)
    bars = []
    for i, (label, counts) in enumerate(series.items()):
        x, y = PAD + i * step, float(HEIGHT - PAD)
        for status in stack:
            n = counts.get(status, 0)
            if not n:
                continue
            h = (HEIGHT - 2 * PAD) * n / top
            y -= h
            bars.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{COLORS.get(status, "gray")}">'
                f"<title>{escape(label)}: {n} {escape(status)}</title></rect>"
            )
    labels = _labels(list(series), step)
    return _svg(f"{title} (highest: {top})", "".join(bars) + labels + _axis(top))


def line_chart(points: dict[str, float | None], unit: str, top: float = 100.0) -> str:
    """A line over the keys of ``points`` (e.g. days or minutes), from 0 to ``top``; a key
    without a value (None) keeps its place on the axis but has no dot."""
    present = {label: value for label, value in points.items() if value is not None}
    if not present:
        return '<p class="empty">No finished jobs in this window.</p>'
    step = (WIDTH - 2 * PAD) / max(len(points), 1)
    coords = {
        label: (PAD + (i + 0.5) * step, HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / top)
        for i, (label, value) in enumerate(points.items())
        if value is not None
    }
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords.values())
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" class="dot"><title>{escape(label)}: '
        f"{present[label]:.1f} {escape(unit)}</title></circle>"
        for label, (x, y) in coords.items()
    )
    body = f'<polyline points="{path}" class="line"/>' + dots
    return _svg(f"Success rate ({unit})", body + _labels(list(points), step) + _axis(top))


def _labels(keys: list[str], step: float) -> str:
    every = max(len(keys) // 8, 1)
    return "".join(
        f'<text x="{PAD + (i + 0.5) * step:.1f}" y="{HEIGHT - 10}" class="tick">'
        f"{escape(k[5:] if len(k) == 10 else k)}</text>"
        for i, k in enumerate(keys)
        if i % every == 0
    )


def _axis(top: float) -> str:
    return (
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        f'class="axis"/><text x="4" y="{PAD}" class="tick start">{top:g}</text>'
    )


def _svg(title: str, body: str) -> str:
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'class="chart"><title>{escape(title)}</title>{body}</svg>'
    )
