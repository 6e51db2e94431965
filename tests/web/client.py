"""The API in process: a TestClient on the app, token headers, and ``Api``, the client the web
tests drive with three tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from jobtrail import Tracker
from tests.waiting import until

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

API = "/api/v1"
BODY_LIMIT = 2048
"""The largest request body the ``api_tracker`` fixture's app accepts."""
OWN = "http://testserver"
"""The TestClient's own origin."""

# Starlette 1.x deprecates driving its TestClient with httpx (it wants the httpx2 fork) and
# warns once, when ``starlette.testclient`` is first imported; that import happens in
# ``open_client``, inside a test, where a module's ``pytestmark = TESTCLIENT_WARNING`` applies.
TESTCLIENT_WARNING = pytest.mark.filterwarnings(
    "ignore:Using `httpx` with `starlette.testclient` is deprecated"
    ":starlette.exceptions.StarletteDeprecationWarning"
)


def open_client(app: FastAPI, *, raise_server_exceptions: bool = True) -> TestClient:
    """A TestClient for ``app`` (use it as a context manager to run the app's lifespan)."""
    from fastapi.testclient import TestClient

    return TestClient(app, raise_server_exceptions=raise_server_exceptions)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def later() -> str:
    """An hour from now, as the API takes a time."""
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


@dataclass
class Api:
    """A client of the app, and the headers of three tokens: an admin, owner A and owner B."""

    tracker: Tracker
    client: TestClient
    admin: dict[str, str]
    alice: dict[str, str]
    bob: dict[str, str]

    @classmethod
    def with_tokens(cls, tracker: Tracker, client: TestClient) -> Api:
        """``client`` with three new tokens of ``tracker``'s store."""
        return cls(
            tracker,
            client,
            admin=bearer(tracker.ops.create_token("admin", None)),
            alice=bearer(tracker.ops.create_token("alice", "A")),
            bob=bearer(tracker.ops.create_token("bob", "B")),
        )

    def external(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        """Create an external job; it must answer 201."""
        response = self.client.post(f"{API}/jobs/external", json=body, headers=headers)
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    def patch(self, job_id: str, headers: dict[str, str], **body: Any) -> httpx.Response:
        response: httpx.Response = self.client.patch(
            f"{API}/jobs/{job_id}", json=body, headers=headers
        )
        return response

    def job(self, job_id: str) -> dict[str, Any]:
        """The job as the admin sees it."""
        response = self.client.get(f"{API}/jobs/{job_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def events(self, job_id: str) -> list[dict[str, Any]]:
        response = self.client.get(f"{API}/jobs/{job_id}/events", headers=self.admin)
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    def wait_until_finished(self, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
        def finished() -> dict[str, Any]:
            job = self.job(job_id)
            return job if job["status"] in ("succeeded", "partial", "failed", "cancelled") else {}

        return until(finished, timeout, what=f"job {job_id} to finish")

    def cookie_client(self, headers: dict[str, str]) -> TestClient:
        """The app's client carrying the dashboard cookie of the token in ``headers``."""
        self.client.cookies.set("jobtrail_token", headers["Authorization"].removeprefix("Bearer "))
        return self.client
