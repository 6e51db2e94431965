"""The peers benchmark's pieces at a tiny scale: the harness drives a real `jobtrail worker`
and the report reads its figures (no timing is asserted: speed is for bench/, not tests)."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest

# The peers are the `bench-peers` extra, which `make test` installs (`make check` does not): a
# plain `pytest` without them skips this module, except in CI, where the import fails instead.
if os.environ.get("CI") != "true":
    pytest.importorskip("procrastinate", reason="the bench-peers extra is not installed")

from bench.api import wrk_ms
from bench.peers import report
from bench.peers.harness import Scale, measure
from bench.peers.sql_peers import JobtrailPeer


def test_the_harness_measures_a_real_jobtrail_worker_and_reports_every_figure(
    tmp_path: Path,
) -> None:
    stores = itertools.count()
    peer = JobtrailPeer(
        "jobtrail", "a SQLite file", lambda: f"sqlite:///{tmp_path / f'{next(stores)}.db'}"
    )
    scale = Scale(jobs=20, repeats=1, status_reads=10, pickups=1, list_calls=1, probe_jobs=10)
    try:
        figures = measure(peer, scale, tmp_path).as_dict()
        failed, owned = peer.list_failed(500), peer.list_owner("owner-0", 100)
    finally:
        peer.close()
    assert all(figure is not None and figure > 0 for figure in figures.values()), figures
    assert (failed, owned) == (2, 20)  # every 10th job failed; one owner, all 20 jobs

    behind = {key: 2 * value for key, value in figures.items() if value is not None}
    systems = {
        "Dramatiq": {"version": "2", "settings": "s", "figures": behind | {"list_owner_ms": None}},
        "jobtrail": {"version": "1", "settings": "s", "figures": figures},
    }
    results = {
        "run": {"started_at": "now", "mode": "quick", "cpus": 2, "python": "3", "note": ""},
        "scale": vars(scale) | {"owners": scale.owners},
        "systems": systems,
        "baselines": {"sqlite_commits_per_s": 4 * (figures["submit_per_s"] or 0)},
    }
    data, text = report.write(results, tmp_path / "results")

    assert json.loads(data.read_text())["systems"]["jobtrail"]["figures"] == figures
    lines = text.read_text().splitlines()
    submit = next(line for line in lines if line.startswith("| submit, one call each"))
    assert "(×0.5)" in submit  # twice jobtrail's rate: jobtrail is behind
    pickup = next(line for line in lines if line.startswith("| idle worker: submit → seen"))
    assert "(×2)" in pickup  # twice jobtrail's latency: jobtrail is ahead
    assert any(line.startswith("| list one owner's 20 of 20 (ms) | — |") for line in lines)
    assert any(line.endswith("| 0.25 |") for line in lines)  # submit ÷ raw sqlite3 commits


@pytest.mark.parametrize(("text", "ms"), [("812.00us", 0.812), ("1.25ms", 1.25), ("2.01s", 2010.0)])
def test_wrk_durations_read_in_milliseconds(text: str, ms: float) -> None:
    assert wrk_ms(text) == pytest.approx(ms)
