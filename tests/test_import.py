"""Importing jobtrail is light: no web framework, broker, database driver or ORM at import time."""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jobtrail

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("fastapi", "starlette", "celery", "psycopg", "sqlalchemy", "alembic")


def modules_loaded_by(code: str) -> set[str]:
    """The modules in ``sys.modules`` after a fresh interpreter runs ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.fixture(scope="module")
def loaded() -> set[str]:
    return modules_loaded_by("import jobtrail")


@pytest.mark.parametrize("heavy", HEAVY)
def test_importing_jobtrail_does_not_import(loaded: set[str], heavy: str) -> None:
    assert "jobtrail" in loaded
    assert not {m for m in loaded if m == heavy or m.startswith(f"{heavy}.")}


def test_the_public_api_is_importable_from_the_package_root() -> None:
    missing = [name for name in jobtrail.__all__ if not hasattr(jobtrail, name)]
    assert missing == []
    assert jobtrail.Settings.__name__ == "Settings"


PUBLIC_MODULES = {
    "jobtrail",
    "jobtrail.sql",
    "jobtrail.web",
    "jobtrail.integrations.celery",
    "jobtrail.integrations.ratelimit",
}
"""What applications import: the package, its SQL helpers for their own tables, and the
extras' entry points. Everything else is internal."""


def jobtrail_imports(path: Path) -> set[str]:
    """The jobtrail modules ``path`` imports (``from X import …`` and ``import X``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m == "jobtrail" or m.startswith("jobtrail.")}


def test_the_examples_import_only_the_public_api() -> None:
    examples = sorted((ROOT / "examples").rglob("*.py"))
    assert examples
    internal = {str(p.relative_to(ROOT)): jobtrail_imports(p) - PUBLIC_MODULES for p in examples}
    assert {path: modules for path, modules in internal.items() if modules} == {}


def test_the_readme_imports_only_the_public_api_and_every_name_it_takes_exists() -> None:
    code = "\n".join(re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S))
    names = re.findall(r"^from (jobtrail[\w.]*) import ([\w, ]+)", code, re.M)
    assert names
    for module, imported in names:
        assert module in PUBLIC_MODULES, module
        loaded = importlib.import_module(module)
        for name in imported.split(","):
            assert hasattr(loaded, name.strip()), f"{module}.{name.strip()}"
    for name in re.findall(r"\bjobtrail\.([A-Z]\w+)", code):  # jobtrail.Tracker, …
        assert name in jobtrail.__all__, name
