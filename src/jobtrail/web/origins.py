"""Which web origins may act with the dashboard's cookie: the server's own and those configured
(the guard against cross-site request forgery and WebSocket hijacking)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi import HTTPException
from starlette.requests import HTTPConnection

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing, so a cross-site one does no harm (its answer is unreadable)."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WEB_SCHEMES = {"ws": "http", "wss": "https"}
_FETCHED_BY_THE_SITE = {"same-origin", "none"}

Origin = tuple[str, str, int]


def parse_origin(text: str) -> Origin | None:
    """``scheme://host[:port]`` as (scheme, host, port), or None if it is not one."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = _WEB_SCHEMES.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


class Origins:
    """The origins allowed to send cookie-borne requests: the request's own (scheme, host and
    port it was addressed to) and ``allowed`` (e.g. a public URL a proxy rewrites)."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowed = {o for o in map(parse_origin, allowed) if o is not None}

    def refusal(self, conn: HTTPConnection) -> str | None:
        """Why a request that authenticates by cookie must be refused, or None if its origin
        is allowed. A request naming no origin is refused unless the browser says it came
        from the same origin (``Sec-Fetch-Site``)."""
        site = conn.headers.get("sec-fetch-site")
        header = conn.headers.get("origin")
        if header is None:
            if site in _FETCHED_BY_THE_SITE:
                return None
            return "cross-origin request refused: no Origin header"
        origin = parse_origin(header)
        if origin is not None and origin in self.allowed:
            return None
        own = parse_origin(f"{conn.url.scheme}://{conn.url.netloc}")
        if origin is None or origin != own:
            return f"cross-origin request refused: origin {header[:100]!r} is not allowed"
        if site is not None and site not in _FETCHED_BY_THE_SITE:
            return f"cross-origin request refused: Sec-Fetch-Site is {site[:20]!r}"
        return None

    def check(self, conn: HTTPConnection) -> None:
        """Raise a 403 unless the cookie-borne request ``conn`` comes from an allowed origin."""
        reason = self.refusal(conn)
        if reason is not None:
            raise HTTPException(403, reason)
