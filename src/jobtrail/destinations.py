"""Where webhooks may go: URLs checked (http(s), absolute, no credentials) and their names
resolved to addresses that are not internal, at creation and again at every send, which then
connects only to an address so vetted (no DNS rebinding)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from jobtrail.exceptions import WebhookRefused

MAX_URL_CHARS = 2048
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
"""Cloud metadata services (AWS, ECS, Alibaba, AWS IPv6), refused even where private
addresses are allowed: they hand out the machine's credentials."""

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Destination:
    """A vetted URL: its scheme, host name (for the Host header and TLS), port, path with
    query, and the addresses it may be reached at."""

    url: str
    scheme: str
    host: str
    port: int
    target: str
    addresses: tuple[str, ...]


def check_url(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path?query)`` of a URL webhooks may use, else
    ``WebhookRefused`` saying why (nothing resolved yet)."""
    if len(url) > MAX_URL_CHARS:
        raise WebhookRefused(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise WebhookRefused("the URL holds spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"not a URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookRefused("only http:// and https:// URLs are allowed")
    if not parts.hostname:
        raise WebhookRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("the URL may not hold a user name or password")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname, port or default, target


def refusal(address: Address, allow_private: bool) -> str | None:
    """Why webhooks may not go to ``address`` (None: they may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA:
        return f"{address} is a cloud metadata address"
    if allow_private:
        return None
    if address.is_loopback:
        return f"{address} is a loopback address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return f"{address} is not a unicast address"
    if address.is_private or not address.is_global:
        return f"{address} is a private address"
    return None


def vet(url: str, allow_private: bool) -> Destination:
    """``url`` with its host resolved now: ``WebhookRefused`` unless every address it
    resolves to may be reached (one internal address among public ones is refused too)."""
    scheme, host, port, target = check_url(url)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise WebhookRefused(f"the host {host!r} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    for text in addresses:
        reason = refusal(ipaddress.ip_address(text.split("%")[0]), allow_private)
        if reason is not None:
            raise WebhookRefused(f"{host} resolves to {reason}")
    if not addresses:
        raise WebhookRefused(f"the host {host!r} has no address")
    return Destination(url, scheme, host, port, target, tuple(addresses))


def pinned_url(destination: Destination, address: str) -> str:
    """The URL that connects to ``address`` itself (the Host header and TLS name are set
    apart, from ``destination.host``)."""
    shown = f"[{address}]" if ":" in address else address
    return f"{destination.scheme}://{shown}:{destination.port}{destination.target}"


def host_header(destination: Destination) -> str:
    """The Host header of a request to ``destination`` (its port only when not the default)."""
    default = 443 if destination.scheme == "https" else 80
    host = f"[{destination.host}]" if ":" in destination.host else destination.host
    return host if destination.port == default else f"{host}:{destination.port}"
