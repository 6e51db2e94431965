"""docs/architecture.md stays true: it names every module, and the layers it draws are the
import-linter contracts in pyproject.toml, which hold."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "jobtrail"
MAP = ROOT / "docs" / "architecture.md"


def modules() -> list[str]:
    """Every module of the package, as the map names it (``store/feed.py``); the migrations'
    revisions are named together, as ``store/migrations/``."""
    found = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    return sorted(m for m in found if not m.startswith("store/migrations/versions/"))


def test_the_architecture_map_names_every_module() -> None:
    text = MAP.read_text()
    missing = [m for m in modules() if f"`{m}`" not in text]
    assert missing == []
    assert "`store/migrations/`" in text


def test_the_map_names_no_module_that_does_not_exist() -> None:
    named = set(re.findall(r"`([\w/]+\.py)`", MAP.read_text()))
    package = {n for n in named if not n.startswith(("tests/", "bench/", "examples/"))}
    assert sorted(n for n in package if not (PACKAGE / n).exists()) == []
    for test in named - package:
        assert (ROOT / test).exists(), test


def test_the_layers_hold_as_import_contracts() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None, "import-linter is part of the test extra"
    done = subprocess.run(
        [lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout
