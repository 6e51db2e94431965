"""Where the benchmarks run: a SQLite file, or a throwaway PostgreSQL server when one is wanted."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def database(dialect: str, name: str) -> Iterator[str]:
    """A fresh, empty store URL for ``dialect`` ("sqlite" or "postgresql")."""
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / (name + '.db')}"
        return
    sys.path.insert(0, str(ROOT))
    from tests.servers import start_postgres

    server = start_postgres()
    if server is None:
        raise SystemExit("PostgreSQL binaries (initdb, pg_ctl) are needed for this benchmark")
    try:
        yield server.create_database(name)
    finally:
        server.stop()
