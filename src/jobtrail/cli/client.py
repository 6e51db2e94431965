"""How the command line reads and changes jobs: through a ``Tracker`` on the store, or a server."""

from __future__ import annotations

import getpass
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar
from urllib.parse import quote

from pydantic import TypeAdapter

from jobtrail.exceptions import JobNotFound, JobTimeout, JobtrailError
from jobtrail.jobs import (
    JSON,
    Event,
    FailedItem,
    ItemPage,
    Job,
    Page,
    ScheduleInfo,
    Stats,
    WorkerInfo,
)
from jobtrail.states import Status

if TYPE_CHECKING:
    import httpx

    from jobtrail.tracker import Tracker

T = TypeVar("T")
EVENTS_PAGE = 1000
ITEMS_PAGE = 1000
PREFIX_SCAN = 1000
"""A short id is looked for among this many of the newest jobs."""
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConsoleError(JobtrailError):
    """The command line got no usable answer: server unreachable, token refused, and so on."""


@dataclass(frozen=True)
class Query:
    """A job listing's filters and page, named as ``Tracker.list`` and ``GET /jobs`` take them."""

    owner: str | None = None
    status: Sequence[Status] = ()
    kind: str | None = None
    priority: str | None = None
    trigger: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    q: str | None = None
    limit: int = 50
    offset: int = 0
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Submission:
    """A job to queue, named as ``Tracker.submit`` and ``POST /jobs`` take it."""

    kind: str
    payload: dict[str, JSON]
    owner: str | None = None
    key: str | None = None
    priority: str | None = None


class Backend(Protocol):
    """Where jobs are read and changed: the store itself, or a jobtrail server."""

    def get(self, job_id: str) -> Job: ...
    def find(self, query: Query) -> Page: ...
    def events(self, job_id: str, after: int) -> list[Event]: ...
    def failed_items(self, job_id: str, after: int) -> ItemPage: ...
    def cancel(self, job_id: str) -> Job: ...
    def retry(self, job_id: str, only_failed_items: bool) -> Job: ...
    def submit(self, order: Submission) -> Job: ...
    def stats(
        self, days: int, owner: str | None, kind: str | None, group_by: str | None = None
    ) -> Stats: ...
    def schedules(self) -> list[ScheduleInfo]: ...
    def workers(self) -> list[WorkerInfo]: ...


def cli_actor() -> str:
    """Who the audit trail names for changes made from this shell: ``cli:<OS user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in the environment or the password database
        return "cli:unknown"


class StoreBackend:
    """Jobs read and changed through a ``Tracker`` on the store; changes name ``actor``, and
    payloads are shown with their secrets masked, as the API shows them."""

    def __init__(self, tracker: Tracker, actor: str) -> None:
        self.tracker = tracker
        self.actor = actor

    def get(self, job_id: str) -> Job:
        return self.tracker.redactor.job(self.tracker.get(job_id))

    def find(self, query: Query) -> Page:
        page = self.tracker.list(**asdict(query))
        return replace(page, jobs=[self.tracker.redactor.job(job) for job in page.jobs])

    def events(self, job_id: str, after: int) -> list[Event]:
        return self.tracker.events(job_id, after=after, limit=EVENTS_PAGE)

    def failed_items(self, job_id: str, after: int) -> ItemPage:
        return self.tracker.failed_item_page(job_id, after=after, limit=ITEMS_PAGE)

    def cancel(self, job_id: str) -> Job:
        return self.tracker.redactor.job(self.tracker.cancel(job_id, actor=self.actor))

    def retry(self, job_id: str, only_failed_items: bool) -> Job:
        job = self.tracker.retry(job_id, only_failed_items=only_failed_items, actor=self.actor)
        return self.tracker.redactor.job(job)

    def submit(self, order: Submission) -> Job:
        return self.tracker.redactor.job(self.tracker.submit(**asdict(order), actor=self.actor))

    def stats(
        self, days: int, owner: str | None, kind: str | None, group_by: str | None = None
    ) -> Stats:
        return self.tracker.stats(days=days, owner=owner, kind=kind, group_by=group_by)

    def schedules(self) -> list[ScheduleInfo]:
        return self.tracker.ops.list_schedules()

    def workers(self) -> list[WorkerInfo]:
        return self.tracker.workers()


class HttpBackend:
    """Jobs read and changed through a server's ``/api/v1``; changes name the token."""

    def __init__(self, url: str, token: str | None, timeout: float = 10.0) -> None:
        try:
            import httpx
        except ImportError:
            raise ConsoleError("--url needs httpx: pip install httpx") from None
        base = url.rstrip("/")
        self.base = base if base.endswith("/api/v1") else f"{base}/api/v1"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            self.client = httpx.Client(base_url=self.base, headers=headers, timeout=timeout)
        except httpx.InvalidURL as exc:
            raise ConsoleError(f"--url {url!r} is not a URL: {exc}") from None

    def call(self, method: str, path: str, *, job_id: str | None = None, **options: Any) -> Any:
        """The JSON answer to one request; a job's 404 is ``JobNotFound``, others one line."""
        import httpx

        try:
            response = self.client.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise ConsoleError(f"cannot reach {self.base}: {exc}") from exc
        if not response.is_success:
            self.refuse(response, job_id)
        return response.json()

    def refuse(self, response: httpx.Response, job_id: str | None) -> NoReturn:
        if response.status_code == 404 and job_id is not None:
            raise JobNotFound(job_id)
        try:
            detail = response.json()["detail"]
        except (ValueError, KeyError, TypeError):
            detail = response.text[:200] or response.reason_phrase
        if isinstance(detail, list):  # a validation error: name the fields
            detail = "; ".join(
                f"{e.get('loc')}: {e.get('msg')}" for e in detail if isinstance(e, dict)
            )
        if response.status_code == 401:
            hint = "pass --token or set JOBTRAIL_TOKEN"
            raise ConsoleError(f"{self.base} refused the token ({detail}); {hint}")
        raise ConsoleError(f"{detail} (HTTP {response.status_code})")

    def job(self, job_id: str, method: str = "GET", suffix: str = "", **options: Any) -> Any:
        """The answer about one job (its record, events, cancel or retry)."""
        path = f"/jobs/{quote(job_id, safe='')}{suffix}"
        return self.call(method, path, job_id=job_id, **options)

    def get(self, job_id: str) -> Job:
        return parse(TypeAdapter(Job), self.job(job_id))

    def find(self, query: Query) -> Page:
        params: list[tuple[str, Any]] = []
        for name, value in asdict(query).items():
            if name == "labels":
                params += [("label", f"{k}:{v}") for k, v in value.items()]
                continue
            values = value if isinstance(value, list | tuple) else [value]
            params += [(name, v.isoformat() if isinstance(v, datetime) else v) for v in values]
        wanted = [(name, value) for name, value in params if value is not None]
        return parse(TypeAdapter(Page), self.call("GET", "/jobs", params=wanted))

    def events(self, job_id: str, after: int) -> list[Event]:
        answer = self.job(job_id, suffix="/events", params={"after": after, "limit": EVENTS_PAGE})
        return parse(TypeAdapter(list[Event]), answer["events"])

    def failed_items(self, job_id: str, after: int) -> ItemPage:
        params = {"after": after, "limit": ITEMS_PAGE}
        return parse(TypeAdapter(ItemPage), self.job(job_id, suffix="/items", params=params))

    def cancel(self, job_id: str) -> Job:
        return parse(TypeAdapter(Job), self.job(job_id, "POST", "/cancel"))

    def retry(self, job_id: str, only_failed_items: bool) -> Job:
        options = {"params": {"only_failed_items": str(only_failed_items).lower()}}
        return parse(TypeAdapter(Job), self.job(job_id, "POST", "/retry", **options))

    def submit(self, order: Submission) -> Job:
        body = {k: v for k, v in asdict(order).items() if v is not None} | {"trigger": "manual"}
        answer = self.call("POST", "/jobs", json=body)  # 202 {job_id, …}, or 200 the keyed job
        return self.get(answer.get("job_id") or answer["id"])

    def stats(
        self, days: int, owner: str | None, kind: str | None, group_by: str | None = None
    ) -> Stats:
        asked = {"days": days, "owner": owner, "kind": kind, "group_by": group_by}
        params = {k: v for k, v in asked.items() if v}
        return parse(TypeAdapter(Stats), self.call("GET", "/stats", params=params))

    def schedules(self) -> list[ScheduleInfo]:
        return parse(TypeAdapter(list[ScheduleInfo]), self.call("GET", "/schedules"))

    def workers(self) -> list[WorkerInfo]:
        return parse(TypeAdapter(list[WorkerInfo]), self.call("GET", "/workers"))


def parse(adapter: TypeAdapter[T], data: Any) -> T:
    """A server's answer as a record, or one line saying it is not one."""
    try:
        return adapter.validate_python(data)
    except ValueError as exc:
        raise ConsoleError(f"the server's answer is not what this jobtrail expects: {exc}") from exc


@contextmanager
def connect(
    url: str | None, token: str | None, tracker: Callable[[], Tracker]
) -> Iterator[Backend]:
    """A server's API when ``url`` is given, else the store of the tracker ``tracker()`` makes."""
    if url:
        remote = HttpBackend(url, token)
        with remote.client:
            yield remote
        return
    with tracker() as local:
        yield StoreBackend(local, cli_actor())


def resolve(backend: Backend, job_id: str) -> Job:
    """The job with this id, or the one recent job whose id starts with it."""
    try:
        return backend.get(job_id)
    except JobNotFound:
        if len(job_id) >= 32:
            raise
        recent = backend.find(Query(limit=PREFIX_SCAN)).jobs
    matches = [job for job in recent if job.id.startswith(job_id)]
    if len(matches) > 1:
        raise ConsoleError(f"{job_id!r} starts {len(matches)} job ids; give more of it")
    if not matches:
        raise JobNotFound(job_id)
    return matches[0]


def all_events(backend: Backend, job_id: str) -> list[Event]:
    """A job's whole history, oldest first, read a page at a time."""
    events: list[Event] = []
    while page := backend.events(job_id, events[-1].id if events else 0):
        events += page
        if len(page) < EVENTS_PAGE:
            break
    return events


def all_failed_items(backend: Backend, job_id: str) -> list[FailedItem]:
    """Every failed item a job lists (at most ``max_failed_items`` a run), read a page at a
    time."""
    items: list[FailedItem] = []
    after: int | None = 0
    while after is not None:
        page = backend.failed_items(job_id, after)
        items += page.items
        after = page.next_after
    return items


def follow(
    backend: Backend, job: Job, timeout: float | None, interval: float, seen: Callable[[Job], None]
) -> Job:
    """Read the job every ``interval`` seconds until it ends; ``JobTimeout`` after ``timeout``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen(job)
    while not job.terminal:
        if deadline is not None and time.monotonic() >= deadline:
            raise JobTimeout(job.id, timeout or 0.0, job.status)
        time.sleep(interval)
        job = backend.get(job.id)
        seen(job)
    return job


def parse_moment(text: str) -> datetime:
    """An ISO time (local time if it has no zone) or an age before now: ``30m``, ``2h``, ``7d``."""
    age = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    try:
        if age:
            return datetime.now(UTC) - timedelta(seconds=float(age[1]) * AGE_UNITS[age[2]])
        return datetime.fromisoformat(text).astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is too far from now to filter on") from None
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO time nor an age like 30m, 2h or 7d") from None
