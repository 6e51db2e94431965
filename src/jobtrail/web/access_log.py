"""Server log lines never carry a token: ``?token=`` (the WebSocket's way to send one) is
masked in uvicorn's access and error logs."""

from __future__ import annotations

import logging
import re

TOKEN_PARAMETER = re.compile(r"([?&]token=)[^&\s\"']*", re.IGNORECASE)
LOGGERS = ("uvicorn.access", "uvicorn.error")
"""uvicorn logs HTTP requests on the first, WebSocket handshakes on the second."""


def mask(text: str) -> str:
    """``text`` with the value of every ``token`` query parameter replaced."""
    return TOKEN_PARAMETER.sub(r"\1[redacted]", text)


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
