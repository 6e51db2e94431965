"""Redactor: removes secrets from error text and JSON and makes them safe to store."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import replace

from jobtrail.jobs import JSON, Job

MASK = "[redacted]"
DEFAULT_KEYS = ("password", "passwd", "token", "cookie", "authorization", "secret", "api_key")
_MAX_DEPTH = 20


class Redactor:
    """Masks values of secret-looking keys in JSON and ``key=value`` pairs in text.

    It also truncates oversized text and drops characters a database cannot store
    (NUL, lone surrogates), so that storing an error can never fail because of its content.
    """

    def __init__(self, patterns: Iterable[str] = (), max_chars: int = 32_768) -> None:
        names = [re.escape(k) for k in DEFAULT_KEYS] + list(patterns)
        self._key = re.compile("|".join(f"(?:{n})" for n in names), re.IGNORECASE)
        # A key starts at a word boundary and is matched lazily then possessively, so a long
        # run of word characters costs linear time, not quadratic backtracking.
        key_words = r"(?<![\w.-])[\w.-]*?(?:" + "|".join(names) + r")[\w.-]*+"
        plain = r"""[^\s,;&'"(){}\[\]]+"""
        # key=value, key: value, "key": "value", Authorization: Bearer xyz, and every pair of
        # a Cookie header (a=b; c=d).
        self._pair = re.compile(
            r"""(?P<key>["']?"""
            + key_words
            + r"""["']?\s*[:=]\s*)"""
            + r"""(?P<value>(?:bearer|basic|token)\s+\S+|"[^"]*"|'[^']*'|"""
            + plain
            + r"(?:;\s*"
            + plain
            + r")*)",
            re.IGNORECASE,
        )
        self.max_chars = max_chars

    def secret_key(self, key: str) -> bool:
        """Whether values stored under ``key`` are secrets."""
        return self._key.search(key) is not None

    def text(self, value: str, max_chars: int | None = None) -> str:
        """``value`` with secrets masked, undecodable characters replaced, and length capped."""
        limit = self.max_chars if max_chars is None else max_chars
        clean = clean_text(value)
        cut = len(clean) - limit
        if cut > 0:  # cut first, so masking never scans more than ``limit`` characters
            clean = clean[:limit]
        clean = self._pair.sub(lambda m: m.group("key") + MASK, clean)
        return clean + f"… [{cut} characters truncated]" if cut > 0 else clean

    def job(self, job: Job) -> Job:
        """``job`` as people see it (API, CLI, dashboard): secrets in its payload masked."""
        return replace(job, payload=self.json(job.payload))

    def json(self, value: JSON, _depth: int = 0) -> JSON:
        """A copy of ``value`` with secret keys masked and every string cleaned."""
        if _depth > _MAX_DEPTH:
            return "[too deep]"
        if isinstance(value, dict):
            return {
                clean_text(str(k)): MASK if self.secret_key(str(k)) else self.json(v, _depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.json(v, _depth + 1) for v in value]
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.text(repr(value))


def clean_text(value: str) -> str:
    """``value`` without NUL characters or lone surrogates, which databases refuse."""
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


MAX_JSON_DEPTH = 64
RESERVED_KEY_PREFIXES = ("schedule:", "celery:")
"""Idempotency keys jobtrail makes itself (a schedule's slot, a Celery task id); callers of
the API cannot use them."""


def check_storable(value: JSON, _depth: int = 0) -> None:
    """Raise ``ValueError`` unless ``value`` is JSON both databases store as given: text without
    NUL characters or lone surrogates, finite numbers, string keys, nesting at most 64 deep.

    The one rule for payloads, results, progress data and labels, whichever way they come in.
    """
    if _depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"object keys must be text, not {type(key).__name__}")
            _check_text(key)
            check_storable(item, _depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            check_storable(item, _depth + 1)
    elif value is not None and not isinstance(value, bool | int | float):
        raise ValueError(f"not JSON: a {type(value).__name__}")


def _check_text(value: str) -> None:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
