"""Server log lines never carry a token: ``?token=`` (the WebSocket's way to send one) is
masked in uvicorn's access and error logs."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

QUERY_PARAMETER = re.compile(r"([?&])([^=&\s\"'#]*)=([^&\s\"'#]*)")
LOGGERS = ("uvicorn.access", "uvicorn.error")
"""uvicorn logs HTTP requests on the first, WebSocket handshakes on the second."""


def mask(text: str) -> str:
    """``text`` with the value of every ``token`` query parameter replaced, however its name
    is spelt: the server decodes ``%74oken`` or ``TOKEN`` to a name it reads the token from."""
    return QUERY_PARAMETER.sub(_masked, text)


def _masked(found: re.Match[str]) -> str:
    separator, name, value = found.groups()
    if unquote_plus(name).strip().lower() == "token":
        value = "[redacted]"
    return f"{separator}{name}={value}"


class TokenMask(logging.Filter):
    """Masks ``token=`` in a record's message and arguments (and keeps the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask(a) if isinstance(a, str) else a for a in record.args)
        return True


def mask_tokens_in_logs() -> None:
    """Install ``TokenMask`` on uvicorn's loggers (once)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TokenMask) for f in logger.filters):
            logger.addFilter(TokenMask())
