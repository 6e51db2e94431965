"""The methods of each API path, as the OpenAPI document lists them: ``OPTIONS`` answers
them in ``Allow``, and any other method is a 405 that lists them (so ``PATCH /jobs/active``
is not taken for ``PATCH /jobs/{job_id}``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

_PARAMETER = re.compile(r"\{[^}/]+\}")
_OPERATIONS = {"get", "put", "post", "delete", "patch"}
_IMPLICIT = {"HEAD": "GET"}
"""Methods the framework answers for another one (HEAD for GET)."""


class PathMethods:
    """Every documented path as a pattern, most specific first (fewest parameters), with its
    methods."""

    def __init__(self, document: dict[str, Any]) -> None:
        paths: dict[str, Any] = document.get("paths", {})
        table = [
            (template.count("{"), _pattern(template), {m.upper() for m in ops} & _METHODS)
            for template, ops in paths.items()
        ]
        self.table = [(pattern, methods) for _, pattern, methods in sorted(table, key=_first)]

    def of(self, path: str) -> set[str] | None:
        """The methods of the path ``path`` matches, or None if it is not documented."""
        for pattern, methods in self.table:
            if pattern.fullmatch(path):
                return methods
        return None


_METHODS = {m.upper() for m in _OPERATIONS}


def _first(row: tuple[int, re.Pattern[str], set[str]]) -> int:
    return row[0]


def _pattern(template: str) -> re.Pattern[str]:
    parts = _PARAMETER.split(template)
    return re.compile("[^/]+".join(re.escape(part) for part in parts))


class MethodGate:
    """ASGI middleware: answers ``OPTIONS`` (204) and undocumented methods (405) of the
    documented paths, both with ``Allow`` listing exactly the path's methods.

    Starlette's own routing cannot: it has no ``OPTIONS`` answer (405), its 405 lists only
    the methods of the first route whose path matches (``DELETE /jobs``: ``GET``, not
    ``POST``), and a method another pattern takes is routed there (``PATCH /jobs/active``
    reaches ``PATCH /jobs/{job_id}``: 404)."""

    def __init__(self, app: ASGIApp, document: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.document = document
        self._paths: PathMethods | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._paths is None:
            self._paths = PathMethods(self.document())
        methods = self._paths.of(_route_path(scope))
        method = _IMPLICIT.get(scope["method"], scope["method"])
        if methods is None or method in methods:
            await self.app(scope, receive, send)
            return
        status = 204 if scope["method"] == "OPTIONS" else 405
        await _answer(send, status, ", ".join(sorted(methods)))


def _route_path(scope: Scope) -> str:
    """The request's path below the app's ``root_path`` (as the document names it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def _answer(send: Send, status: int, allow: str) -> None:
    body = b"" if status == 204 else b'{"detail":"Method Not Allowed"}'
    headers = [(b"allow", allow.encode()), (b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
