"""Alert channels: apprise (loaded on first use), channel URLs checked, shown as labels that
hold no secret, and scrubbed from apprise's log lines and errors."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from urllib.parse import unquote, urlsplit

from jobtrail.exceptions import AlertRuleRefused

MAX_URL_CHARS = 2000

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]{0,30})://[^\s\x00-\x1f\x7f]+$")
# Schemes whose host part is a server's name; in the others (slack://TOKEN/…) it is a secret.
_HOST_SCHEMES = frozenset(
    {"mailto", "mailtos", "json", "jsons", "form", "forms", "xml", "xmls", "ntfy", "ntfys"}
    | {"gotify", "gotifys", "mmost", "mmosts", "rocket", "rockets", "matrix", "matrixs"}
)


def channel_label(url: str) -> str:
    """What a channel URL is shown as: its scheme and, when that is not a secret, its host
    (``mailto://smtp.example.com``, ``slack://…``) — never a token, user or password."""
    match = _SCHEME.match(url)
    if match is None:
        return "invalid://…"
    scheme = match.group(1)
    if scheme not in _HOST_SCHEMES:
        return f"{scheme}://…"
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "…", parts.port
    except ValueError:
        return f"{scheme}://…"
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def apprise() -> ModuleType:
    """The notification library, loaded with the first rule rather than with jobtrail. (Its
    e-mail plugin imports ``imghdr``, deprecated before Python 3.13: loaded here first, so the
    host is spared that warning.) Its log lines pass ``_Scrubbed``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise

        if sys.version_info < (3, 13):
            import imghdr  # noqa: F401

    log = logging.getLogger("apprise")
    if not any(isinstance(f, _Scrubbed) for f in log.filters):
        log.addFilter(_Scrubbed())
    return apprise


_speaking: dict[str, int] = {}
_speaking_lock = threading.Lock()


@contextmanager
def speaking_to(url: str) -> Iterator[None]:
    """While apprise handles ``url`` (in any of its threads), its log lines lose the URL's
    secrets: apprise names a URL it cannot parse, and hosts and paths as it sends."""
    with _speaking_lock:
        _speaking[url] = _speaking.get(url, 0) + 1
    try:
        yield
    finally:
        with _speaking_lock:
            _speaking[url] -= 1
            if not _speaking[url]:
                del _speaking[url]


class _Scrubbed(logging.Filter):
    """Rewrites apprise's log lines without the secrets of the URLs it is handling."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _speaking_lock:
            urls = list(_speaking)
        if urls:
            text = record.getMessage()
            for url in urls:
                text = scrub(text, url)
            record.msg, record.args = text, ()
        return True


def scrub(text: str, url: str) -> str:
    """``text`` without anything of ``url`` that could be a secret: the URL itself, its user,
    password, path parts and query values (a host that is a server's name stays)."""
    pieces: list[str | None] = [url, *re.split(r"[/?&=@:]", url)]
    host = None
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        pieces += [parts.username, parts.password]
        host = parts.hostname if parts.scheme in _HOST_SCHEMES else None
    for piece in sorted({p for p in pieces if p and len(p) >= 4}, key=len, reverse=True):
        if piece == host or piece in _HOST_SCHEMES:
            continue
        text = text.replace(piece, "…").replace(unquote(piece), "…")
    return text[:500]


def check_channel(url: object) -> str:
    """``url`` if it is a channel URL the notification library can send to; else
    ``AlertRuleRefused`` naming only its label (the URL may hold a secret)."""
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS or not _SCHEME.match(url):
        raise AlertRuleRefused("a channel is a URL such as mailto://…, slack://… or json://…")
    with speaking_to(url):
        found = apprise().Apprise.instantiate(url)
    if found is None:
        raise AlertRuleRefused(f"channel {channel_label(url)} is not a URL apprise can send to")
    return url
