"""Start throwaway PostgreSQL and Redis servers on free loopback ports for the test suite."""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
import redis
from psycopg import sql
from psycopg.rows import TupleRow

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
PG_USER = "postgres"
PG_START_TIMEOUT = 30.0
REDIS_START_TIMEOUT = 15.0
PORT_ATTEMPTS = 3
_PG_LOG_NAME = "postgres.log"
_PG_SERVER_OPTIONS = (
    "-F",
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
    "-c max_connections=300",
)


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, limit: int = 4000) -> str:
    """Return the last ``limit`` characters of a log file, or a note if it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    return text[-limit:]


# --------------------------------------------------------------------------- PostgreSQL


def _find_pg_binaries() -> tuple[Path, Path] | None:
    """Locate ``initdb`` and ``pg_ctl``: PATH first, then the newest /usr/lib/postgresql/*/bin."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is not None and pg_ctl is not None:
        return Path(initdb), Path(pg_ctl)

    def version_key(bindir: Path) -> tuple[int, str]:
        name = bindir.parent.name
        return (int(name) if name.isdigit() else -1, name)

    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_key, reverse=True):
        initdb_path, pg_ctl_path = bindir / "initdb", bindir / "pg_ctl"
        if os.access(initdb_path, os.X_OK) and os.access(pg_ctl_path, os.X_OK):
            return initdb_path, pg_ctl_path
    return None


def _is_root() -> bool:
    return os.geteuid() == 0


def _postgres_account() -> pwd.struct_passwd:
    """Return the ``postgres`` system account, creating it (as root) if it is missing."""
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        if not _is_root():
            raise RuntimeError(f"the {PG_USER!r} system user does not exist") from None
    subprocess.run(
        ["useradd", "--system", PG_USER], check=True, capture_output=True, text=True, timeout=60
    )
    return pwd.getpwnam(PG_USER)


def _run_pg(
    argv: Sequence[str | Path], cwd: Path, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, as the ``postgres`` user when we are root (initdb refuses root)."""
    cmd = [str(arg) for arg in argv]
    if _is_root():
        cmd = [shutil.which("runuser") or "runuser", "-u", PG_USER, "--", *cmd]
    return subprocess.run(
        cmd,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _pg_accepts_connections(host: str, port: int, user: str) -> bool:
    try:
        with psycopg.connect(
            host=host, port=port, user=user, dbname="postgres", connect_timeout=2
        ) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL cluster in a private data directory (trust auth, loopback only)."""

    host: str
    port: int
    user: str
    datadir: Path
    pg_ctl: Path = Path("pg_ctl")
    socket_dir: Path | None = None
    root: Path | None = None  # temporary directory that stop() deletes; None keeps the files

    @property
    def logfile(self) -> Path:
        return self.datadir / _PG_LOG_NAME

    def url(self, database: str) -> str:
        """Return the SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[TupleRow]:
        """Open an autocommit psycopg connection to ``database``."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=database,
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (copying ``template`` if given) and return its URL."""
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with self.connect() as conn:
            conn.execute(query)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, terminating its connections first."""
        query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        with self.connect() as conn:
            conn.execute(query)

    def wait_ready(self, timeout: float = PG_START_TIMEOUT) -> None:
        """Block until the server accepts connections; RuntimeError with the log tail if not."""
        deadline = time.monotonic() + timeout
        while not _pg_accepts_connections(self.host, self.port, self.user):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL on port {self.port} did not accept connections within "
                    f"{timeout:.0f}s; log tail:\n{_log_tail(self.logfile)}"
                )
            time.sleep(0.1)

    def _pg_ctl(self, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        return _run_pg(
            [self.pg_ctl, "-D", self.datadir, *args], cwd=self.datadir.parent, timeout=timeout
        )

    def is_running(self) -> bool:
        """Return True if ``pg_ctl status`` reports a running server."""
        return self.datadir.is_dir() and self._pg_ctl("status", timeout=30).returncode == 0

    def restart(self) -> None:
        """Restart the server (fast shutdown) and wait until it accepts connections again."""
        result = self._pg_ctl("restart", "-m", "fast", "-w", "-t", "60", "-l", str(self.logfile))
        if result.returncode != 0:
            raise RuntimeError(
                f"pg_ctl restart failed ({result.returncode}): {result.stdout}{result.stderr}\n"
                f"log tail:\n{_log_tail(self.logfile)}"
            )
        self.wait_ready()

    def _kill_postmaster(self) -> None:
        """Last resort: SIGKILL the postmaster named in postmaster.pid."""
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop the server (fast, then immediate, then SIGKILL) and delete its files; idempotent."""
        try:
            stopped = not self.is_running() or any(
                self._pg_ctl("stop", "-m", mode, "-w", "-t", "30").returncode == 0
                for mode in ("fast", "immediate")
            )
        except (subprocess.TimeoutExpired, OSError):
            stopped = False
        if not stopped:
            self._kill_postmaster()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def _make_pg_root(base: Path | None) -> Path:
    """Create a private temporary directory that the postgres user owns when we are root."""
    root = Path(tempfile.mkdtemp(prefix="jobtrail-pg-", dir=base))
    if _is_root():
        account = _postgres_account()
        os.chown(root, account.pw_uid, account.pw_gid)
    return root


def _initdb(initdb: Path, datadir: Path) -> None:
    result = _run_pg(
        [
            initdb,
            "-D",
            datadir,
            "-A",
            "trust",
            "-U",
            PG_USER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        cwd=datadir.parent,
    )
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def _pg_start(server: PostgresServer) -> subprocess.CompletedProcess[str]:
    socket_dir = server.socket_dir or server.datadir.parent
    options = [
        *_PG_SERVER_OPTIONS,
        f"-k {shlex.quote(str(socket_dir))}",
        f"-h {server.host}",
        f"-p {server.port}",
    ]
    timeout = str(int(PG_START_TIMEOUT))
    return server._pg_ctl(
        "start", "-w", "-t", timeout, "-l", str(server.logfile), "-o", " ".join(options)
    )


def start_postgres(base: Path | None = None) -> PostgresServer | None:
    """Initialise and start a private PostgreSQL cluster under ``base`` (default: the temp dir).

    Returns None only if the PostgreSQL binaries are missing; any other failure raises.
    When running as root, ``base`` must be traversable by the ``postgres`` user.
    """
    binaries = _find_pg_binaries()
    if binaries is None:
        return None
    initdb, pg_ctl = binaries
    root = _make_pg_root(base)
    datadir = root / "data"
    try:
        _initdb(initdb, datadir)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            server = PostgresServer(
                LOOPBACK, free_port(), PG_USER, datadir, pg_ctl, socket_dir=root, root=root
            )
            result = _pg_start(server)
            if result.returncode == 0:
                break
            tail = _log_tail(server.logfile)
            if "could not bind" not in tail or attempt == PORT_ATTEMPTS:
                raise RuntimeError(
                    f"pg_ctl start failed ({result.returncode}): {result.stdout}{result.stderr}\n"
                    f"log tail:\n{tail}"
                )
        atexit.register(server.stop)
        server.wait_ready()
    except BaseException:
        PostgresServer(LOOPBACK, 0, PG_USER, datadir, pg_ctl, root=root).stop()
        raise
    return server


# --------------------------------------------------------------------------- Redis


def _redis_answers_ping(host: str, port: int) -> bool:
    client = redis.Redis(host=host, port=port, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        return False
    finally:
        client.close()
    return True


@dataclass(frozen=True)
class RedisServer:
    """A running, non-persistent redis-server child process."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path | None = None  # temporary directory that stop() deletes; None keeps the files

    @property
    def logfile(self) -> Path | None:
        return None if self.workdir is None else self.workdir / "redis.log"

    def url(self, db: int = 0) -> str:
        """Return the redis:// URL of logical database ``db``."""
        return f"redis://{self.host}:{self.port}/{db}"

    def stop(self) -> None:
        """Terminate the server (SIGKILL if it lingers) and delete its files; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _wait_ready(self, timeout: float) -> bool:
        """Wait for PING; False if the process exited first, RuntimeError on timeout."""
        deadline = time.monotonic() + timeout
        while not _redis_answers_ping(self.host, self.port):
            if self.process.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.05)
        return True


def _spawn_redis(executable: str, workdir: Path) -> RedisServer:
    port = free_port()
    argv = [
        executable,
        *("--bind", LOOPBACK, "--port", str(port), "--dir", str(workdir)),
        *("--save", "", "--appendonly", "no", "--daemonize", "no"),
    ]
    with open(workdir / "redis.log", "wb") as log:
        process = subprocess.Popen(
            argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    return RedisServer(LOOPBACK, port, process, workdir)


def start_redis() -> RedisServer | None:
    """Start ``redis-server`` from PATH on a free loopback port; None if it is not installed."""
    executable = shutil.which("redis-server")
    if executable is None:
        return None
    workdir = Path(tempfile.mkdtemp(prefix="jobtrail-redis-"))
    for attempt in range(1, PORT_ATTEMPTS + 1):
        server = _spawn_redis(executable, workdir)
        try:
            ready = server._wait_ready(REDIS_START_TIMEOUT)
        except BaseException:
            server.stop()
            raise
        if ready:
            atexit.register(server.stop)
            return server
        tail = _log_tail(workdir / "redis.log")
        if "Address already in use" not in tail or attempt == PORT_ATTEMPTS:
            server.stop()
            raise RuntimeError(f"redis-server exited with {server.process.returncode}:\n{tail}")
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- pytest helper


def require(what: str, server: T | None) -> T:
    """Return ``server``; if it is None, fail the test in CI (CI=true) and skip it elsewhere."""
    if server is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is required in CI but was not found")
        pytest.skip(f"{what} not available")
    return server
