"""Starting an example's processes on loopback: a redis-server on a free port, uvicorn apps and
workers, each stopped (SIGTERM, then SIGKILL) when the launch ends."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    """Return once ``url`` answers over HTTP (any status); ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:g} s") from None
            time.sleep(0.1)


class Processes:
    """Child processes sharing one environment, stopped in reverse order."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = os.environ | env
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, *argv: str) -> subprocess.Popen[bytes]:
        """Start ``argv`` (``python -m …`` when it names a module)."""
        child = subprocess.Popen([sys.executable, "-m", *argv], env=self.env)
        self.children.append(child)
        return child

    def serve(self, app: str, port: int) -> str:
        """Serve the ASGI ``app`` ("module:attribute") with uvicorn; its base URL once up."""
        child = self.start("uvicorn", app, "--host", LOOPBACK, "--port", str(port))
        base = f"http://{LOOPBACK}:{port}"
        try:
            wait_until_up(base)
        except TimeoutError:
            raise RuntimeError(f"{app} exited with {child.poll()}") from None
        return base

    def stop(self, child: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
        """SIGTERM (workers drain), SIGKILL if it lingers."""
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child)


@contextmanager
def processes(env: dict[str, str]) -> Iterator[Processes]:
    """Processes started in the block, all stopped when it ends."""
    group = Processes(env)
    try:
        yield group
    finally:
        group.stop_all()


@contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server on a free loopback port; its URL."""
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server is not installed: run `make system-deps` (Debian: redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="jobtrail-example-") as workdir:
        argv: Sequence[str] = [
            executable,
            *("--bind", LOOPBACK, "--port", str(port), "--dir", workdir),
            *("--save", "", "--appendonly", "no"),
        ]
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        try:
            _wait_for_port(port)
            yield f"redis://{LOOPBACK}:{port}/0"
        finally:
            server.terminate()
            server.wait(10)


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def run_until_interrupted(message: str) -> None:
    """Print ``message`` and wait for Ctrl-C (or SIGTERM); the launch's blocks then stop
    every process they started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(message, flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        print("stopping…", flush=True)
