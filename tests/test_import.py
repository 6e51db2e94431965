"""Importing jobtrail is light: no web framework, broker, database driver or ORM at import time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import jobtrail

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
