"""Optional extras: which modules each one brings, and the one-line error when one is missing."""

from __future__ import annotations

import importlib.util

from jobtrail.exceptions import MissingExtra

EXTRAS: dict[str, tuple[str, ...]] = {
    "web": ("fastapi", "uvicorn", "jinja2", "prometheus_client", "limits"),
    "postgres": ("psycopg",),
    "celery": ("celery",),
    "ratelimit": ("limits", "httpx"),
}
"""``pip install 'jobtrail[NAME]'`` for each NAME: the modules it makes importable."""


def require(extra: str, feature: str) -> None:
    """Raise ``MissingExtra`` naming what to install unless ``extra``'s modules are present."""
    missing = [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(extra, feature, missing)
