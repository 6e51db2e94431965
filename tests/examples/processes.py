"""Serve an example's ASGI app (or its fake upstream) with the real uvicorn in a subprocess on
a free loopback port, and stop it with SIGTERM as a deployment would."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.test_serve import REPO, command_env
from tests.servers import LOOPBACK, free_port
from tests.waiting import until_answers

STOP_TIMEOUT = 20.0


@dataclass
class Served:
    """One uvicorn process serving ``target`` at ``url``."""

    target: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=httpx.Timeout(10.0))

    def stop(self) -> None:
        """SIGTERM, and check that uvicorn shut the app down gracefully."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            message = f"{self.target} ignored SIGTERM:\n{self.output()[-3000:]}"
            raise AssertionError(message) from None
        assert "Application shutdown complete" in self.output(), self.output()[-3000:]


def serve(target: str, log: Path, database_url: str, **env: str) -> Served:
    """Serve ``target`` (``module:app``) on a free port with this store and environment, and
    wait until it answers."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", target, "--host", LOOPBACK, "--port", str(port)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=command_env(database_url, **env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(target, process, f"http://{LOOPBACK}:{port}", log)

    def alive() -> None:
        assert process.poll() is None, f"{target} exited:\n{served.output()[-3000:]}"

    try:
        until_answers(f"{served.url}/openapi.json", what=f"{target} to answer", alive=alive)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return served


class Fleet:
    """The processes a test starts (``fleet.serve(...)``), all stopped when it ends."""

    def __init__(self, directory: Path, database_url: str) -> None:
        self.directory = directory
        self.database_url = database_url
        self.started: list[Served] = []

    def serve(self, target: str, name: str, **env: str) -> Served:
        served = serve(target, self.directory / f"{name}.log", self.database_url, **env)
        self.started.append(served)
        return served

    def stop_all(self) -> None:
        """Stop what still runs; each must shut down gracefully."""
        problems = []
        for served in reversed(self.started):  # the apps before their upstreams
            if served.process.returncode is None:
                try:
                    served.stop()
                except AssertionError as exc:
                    problems.append(str(exc))
        assert problems == []
