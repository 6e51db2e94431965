"""The results of one run as JSON, and as the markdown table with ratios against jobtrail."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REFERENCE = "jobtrail"


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure of every system, and which way is better."""

    key: str
    label: str
    higher_is_better: bool
    digits: int


ROWS = (
    Row("submit_per_s", "submit, one call each (jobs/s)", True, 0),
    Row("end_to_end_per_s", "end-to-end no-op (jobs/s)", True, 0),
    Row("end_to_end_progress_per_s", "end-to-end, {progress} progress calls/job (jobs/s)", True, 0),
    Row("status_read_p99_ms", "status read p99 (ms)", False, 2),
    Row("pickup_p50_ms", "idle worker: submit → seen finished, p50 (ms)", False, 1),
    Row("pickup_p99_ms", "idle worker: submit → seen finished, p99 (ms)", False, 1),
    Row("list_failed_ms", "list {failed} failed of {jobs} (ms)", False, 1),
    Row("list_owner_ms", "list one owner's {owned} of {jobs} (ms)", False, 1),
)


def advantage(row: Row, mine: float, theirs: float) -> float:
    """How many times better jobtrail's figure is than ``theirs`` (below 1: behind)."""
    return mine / theirs if row.higher_is_better else theirs / mine


def cell(row: Row, figure: float | None, reference: float | None) -> str:
    """``1,234 (×2.1)``: the figure and jobtrail's advantage over it; ``—`` when absent."""
    if figure is None:
        return "—"
    text = f"{figure:,.{row.digits}f}"
    if reference is None or figure == 0 or reference == 0:
        return text
    ratio = advantage(row, reference, figure)
    return f"{text} (×{ratio:.0f})" if ratio >= 10 else f"{text} (×{ratio:.2g})"


def table(results: Mapping[str, Any]) -> str:
    """The markdown table of every system's figures, ratios against jobtrail on SQLite."""
    systems = results["systems"]
    scale = results["scale"]
    names = list(systems)
    header = " | ".join(f"{name} {systems[name]['version']}" for name in names)
    lines = [f"| | {header} |", "|---" * (len(names) + 1) + "|"]
    owned = min(100, scale["jobs"] // scale["owners"])
    words = {"jobs": f"{scale['jobs']:,}", "failed": min(500, scale["jobs"] // 10), "owned": owned}
    words["progress"] = scale["progress_calls"]
    for row in ROWS:
        reference = systems[REFERENCE]["figures"][row.key]
        cells = []
        for name in names:
            figure = systems[name]["figures"][row.key]
            cells.append(cell(row, figure, None if name == REFERENCE else reference))
        lines.append(f"| {row.label.format(**words)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def run_sizes(results: Mapping[str, Any]) -> str:
    """How many jobs each system's end-to-end runs had (a slow system's runs are shorter)."""
    sizes = (
        f"{name} {s['figures']['end_to_end_jobs']:,} / {s['figures']['end_to_end_progress_jobs']:,}"
        for name, s in results["systems"].items()
    )
    return "Jobs per end-to-end run (no-op / with progress): " + "; ".join(sizes) + "."


def baselines(results: Mapping[str, Any]) -> str:
    """jobtrail against the floors under it, as ratios."""
    base = results["baselines"]
    jobtrail = results["systems"][REFERENCE]["figures"]
    lines = ["| floor | figure | jobtrail | jobtrail ÷ floor |", "|---|---|---|---|"]
    if "sqlite_commits_per_s" in base:
        raw, mine = base["sqlite_commits_per_s"], jobtrail["submit_per_s"]
        lines.append(
            f"| raw `sqlite3` INSERT + COMMIT (per s) vs `submit` | {raw:,.0f} | {mine:,.0f} "
            f"| {mine / raw:.2f} |"
        )
    if "sqlite_job_rows_per_s" in base:
        raw, mine = base["sqlite_job_rows_per_s"], jobtrail["submit_per_s"]
        lines.append(
            f"| raw `sqlite3` writing jobtrail's own rows (job + event) vs `submit` | {raw:,.0f} "
            f"| {mine:,.0f} | {mine / raw:.2f} |"
        )
    if "fastapi" in base:
        plain, serve = base["fastapi"], base["jobtrail_serve"]
        lines.append(
            "| plain FastAPI `GET /jobs/{id}` vs `jobtrail serve` (req/s, wrk -c50) "
            f"| {plain['requests_per_s']:,.0f} | {serve['requests_per_s']:,.0f} "
            f"| {serve['requests_per_s'] / plain['requests_per_s']:.2f} |"
        )
        lines.append(
            "| the same, p99 (ms; ratio floor ÷ jobtrail) "
            f"| {plain['p99_ms']:.1f} | {serve['p99_ms']:.1f} "
            f"| {plain['p99_ms'] / serve['p99_ms']:.2f} |"
        )
    return "\n".join(lines)


def markdown(results: Mapping[str, Any]) -> str:
    """The whole report: the run, the table, the floors and every system's settings."""
    run = results["run"]
    settings = "\n".join(
        f"- **{name}**: {system['settings']}" for name, system in results["systems"].items()
    )
    return (
        f"# jobtrail beside its peers ({run['started_at']}, {run['mode']} run)\n\n"
        f"{run['cpus']} CPUs, Python {run['python']}; {run['note']}.\n\n"
        "×N after a figure: how many times better jobtrail (SQLite) is — above 1 jobtrail is "
        "ahead, below 1 behind.\n\n"
        f"{table(results)}\n\n{run_sizes(results)}\n\n"
        f"## Floors\n\n{baselines(results)}\n\n## Settings\n\n{settings}\n"
    )


def write(results: Mapping[str, Any], directory: Path) -> tuple[Path, Path]:
    """``peers.json`` and ``peers.md`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    data, text = directory / "peers.json", directory / "peers.md"
    data.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    text.write_text(markdown(results))
    return data, text
