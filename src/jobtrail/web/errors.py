"""The one table that maps jobtrail's errors to HTTP responses, and the body-size guard."""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobtrail.exceptions import (
    IllegalTransition,
    InvalidData,
    InvalidOwner,
    JobNotFound,
    JobtrailError,
    KeyInUse,
    NotAllowed,
    PayloadError,
    StoreError,
    TokenExists,
    TooManyFilters,
    TooManyJobs,
    UnknownAlertRule,
    UnknownKind,
    UnknownSchedule,
    WebhookNotFound,
)

STATUS_OF: dict[type[JobtrailError], int] = {
    NotAllowed: 403,
    JobNotFound: 404,
    UnknownSchedule: 404,
    WebhookNotFound: 404,
    UnknownAlertRule: 404,
    IllegalTransition: 409,
    KeyInUse: 409,
    TokenExists: 409,
    UnknownKind: 422,
    InvalidData: 422,
    InvalidOwner: 422,
    PayloadError: 422,
    TooManyJobs: 422,
    TooManyFilters: 422,
    StoreError: 503,
}


RETRY_AFTER_SECONDS = 2
"""What a 503 asks clients to wait: a store reconnects within a few seconds of coming back."""


def _status(exc: JobtrailError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400


async def _handle(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, JobtrailError)
    status = _status(exc)
    if status == 503:
        detail = f"the job store is unavailable; try again in {RETRY_AFTER_SECONDS} s"
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)
    return JSONResponse({"detail": str(exc)}, status_code=status)


def json_safe(value: Any) -> Any:
    """``value`` with what JSON cannot carry made into text: non-finite numbers, and lone
    surrogates (escaped), so an error can always echo the input it refuses."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    detail = json_safe(jsonable_encoder(exc.errors()))
    return JSONResponse({"detail": detail}, status_code=422)


class JobtrailRoute(APIRoute):
    """A route that answers ``JobtrailError`` and invalid input itself, so the router works in
    any host app without ``install_error_handlers``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except JobtrailError as exc:
                return await _handle(request, exc)
            except RequestValidationError as exc:
                return await _invalid(request, exc)

        return handle


def install_error_handlers(app: FastAPI) -> None:
    """Answer every ``JobtrailError`` with its status and ``{"detail": ...}``, and invalid
    input with a 422 whose body is always JSON."""
    app.add_exception_handler(JobtrailError, _handle)
    app.add_exception_handler(RequestValidationError, _invalid)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a 413, before reading them in full."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        seen = 0
        refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes and not refused:
                # Answer now and tell the app the client went away; whatever it sends
                # after that is dropped.
                refused = True
                await self._refuse(send)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, guarded_send)

    async def _refuse(self, send: Send) -> None:
        body = b'{"detail":"request body too large (limit %d bytes)"}' % self.max_bytes
        headers: list[Any] = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
