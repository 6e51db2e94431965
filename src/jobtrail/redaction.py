"""Redactor: removes secrets from text and JSON and makes them safe to store — the one path
every text and JSON value takes on its way into the store."""

from __future__ import annotations

import math
import re
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from jobtrail.exceptions import InvalidData
from jobtrail.jobs import JSON, Job, NewFailedItem, NewJob

MASK = "[redacted]"
DEFAULT_KEYS = ("password", "passwd", "token", "cookie", "authorization", "secret", "api_key")
_MAX_DEPTH = 20
MAX_MESSAGE = 4000
"""Characters of a job's status message that are stored."""
MAX_ERROR = 4096
"""Characters of an error message that are stored."""
MAX_ITEM_ID = 500
"""Characters of a failed item's id that are stored."""
MAX_VALUE_CHARS = 1_000_000
"""Characters of one string inside a result, progress data or labels that are stored."""
# The password of ``scheme://user:password@host``: only tried right after a ``://``, and each
# run it scans ends at the next ``/`` or space, so a long text costs linear time.
_URL_PASSWORD = re.compile(r"(?<=://)(?P<user>[^\s:/@]*):(?P<password>[^\s/]*)@")
# AWS access key ids: long-term (AKIA) and temporary (ASIA) ones.
_AWS_KEY = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_REPORTED_TEXT = ("message", "error_message")
_REPORTED_JSON = ("result", "progress_data", "error_details")


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
        if "://" in clean:
            clean = _URL_PASSWORD.sub(lambda m: m.group("user") + ":" + MASK + "@", clean)
        if "AKIA" in clean or "ASIA" in clean:
            clean = _AWS_KEY.sub(MASK, clean)
        return clean + f"… [{cut} characters truncated]" if cut > 0 else clean

    def job(self, job: Job) -> Job:
        """``job`` as people see it (API, CLI, dashboard): secrets in its payload masked."""
        return replace(job, payload=self.json(job.payload))

    def json(self, value: JSON, _depth: int = 0, *, max_chars: int | None = None) -> JSON:
        """A copy of ``value`` with secret keys masked and every string cleaned (each one cut
        at ``max_chars``, by default the redactor's)."""
        if _depth > _MAX_DEPTH:
            return "[too deep]"
        if isinstance(value, dict):
            return {
                clean_text(str(k)): MASK
                if self.secret_key(str(k))
                else self.json(v, _depth + 1, max_chars=max_chars)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.json(v, _depth + 1, max_chars=max_chars) for v in value]
        if isinstance(value, str):
            return self.text(value, max_chars)
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.text(_repr(value), max_chars)

    def stored(self, value: JSON) -> JSON:
        """A handler's ``value`` (result, progress data) as it is stored: text cleaned and
        secrets masked. Raises ``ValueError`` for what cannot be stored faithfully: numbers
        that are not finite, values that are not JSON, keys that are not text."""
        check_storable(value, text=False)
        return self.json(value, max_chars=MAX_VALUE_CHARS)

    def new_job(self, new: NewJob) -> NewJob:
        """A job described by a caller, as it is stored: refused (``InvalidData``) unless its
        fields are storable, its message and label values redacted. The payload stays as
        given (its handler needs it); ``job`` masks it for display."""
        fields: dict[str, JSON] = {"kind": new.kind, "key": new.key, "owner": new.owner}
        fields |= {"trigger": new.trigger, "queue": new.queue, "message": new.message}
        fields |= {"labels": dict(new.labels), "items_total": new.items_total}
        checked("job", fields)
        message = None if new.message is None else self.text(new.message, MAX_MESSAGE)
        labels = self.json(dict(new.labels), max_chars=MAX_VALUE_CHARS)
        return replace(new, message=message, labels=labels)

    def reported(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values reported for a job (``Tracker.report``) as they are stored: refused
        (``InvalidData``) unless storable, text and JSON redacted."""
        checked("report", values)
        stored = dict(values)
        for name in _REPORTED_TEXT:
            if stored.get(name) is not None:
                stored[name] = self.text(stored[name], MAX_ERROR)
        for name in _REPORTED_JSON:
            if stored.get(name) is not None:
                stored[name] = self.json(stored[name], max_chars=MAX_VALUE_CHARS)
        return stored

    def failed_item(self, item: NewFailedItem) -> NewFailedItem:
        """A failed item reported from elsewhere as it is stored, like the runner stores its
        own: refused (``InvalidData``) unless storable; id and message redacted and capped."""
        fields = {"item_id": item.item_id, "error_type": item.error_type, "message": item.message}
        checked("failed item", fields)
        item_id = self.text(clean_text(item.item_id)[:MAX_ITEM_ID])[:MAX_ITEM_ID]
        error_type = clean_text(item.error_type)[:200]
        return NewFailedItem(item_id, error_type, self.text(item.message, MAX_ERROR))


def shown(value: object) -> str:
    """``str(value)``, or a placeholder when the object cannot be made into text (a broken
    ``__str__``, or nesting too deep to print): describing a failure must not fail."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} that cannot be shown as text>"


def error_text(error: BaseException) -> str:
    """``"Type: message"`` of an exception, whatever its message does."""
    return f"{type(error).__name__}: {shown(error)}"


def traceback_text(error: BaseException) -> str:
    """The formatted traceback of ``error``; its frames alone when the message cannot be
    printed."""
    try:
        return "".join(traceback.format_exception(error))
    except Exception:
        frames = "".join(traceback.format_tb(error.__traceback__))
        return f"Traceback (most recent call last):\n{frames}{error_text(error)}\n"


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
RESERVED_KEY_PREFIXES = ("schedule:", "celery:", "startup:")
"""Idempotency keys jobtrail makes itself (a schedule's slot, a Celery task id, a start
window's startup job); callers of
the API cannot use them."""


def check_storable(value: JSON, _depth: int = 0, *, text: bool = True) -> None:
    """Raise ``ValueError`` unless ``value`` is JSON both databases store as given: text without
    NUL characters or lone surrogates, finite numbers, string keys, nesting at most 64 deep.

    The one rule for payloads, results, progress data and labels, whichever way they come in.
    ``text=False`` leaves the characters of text out of the check, for values whose text is
    cleaned on the way in (a handler's results and progress data).
    """
    if _depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, str):
        if text:
            _check_text(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, dict):
        _check_object(value, _depth, text)
    elif isinstance(value, list | tuple):
        for item in value:
            check_storable(item, _depth + 1, text=text)
    elif value is not None and not isinstance(value, bool | int | float):
        raise ValueError(f"not JSON: a {type(value).__name__}")


def _check_object(value: dict[Any, JSON], depth: int, text: bool) -> None:
    for key, item in value.items():
        if not isinstance(key, str):
            raise ValueError(f"object keys must be text, not {type(key).__name__}")
        if text:
            _check_text(key)
        check_storable(item, depth + 1, text=text)


def checked(what: str, values: Mapping[str, Any]) -> None:
    """Raise ``InvalidData`` naming the field of ``values`` that ``check_storable`` refuses."""
    for name, value in values.items():
        try:
            check_storable(value)
        except ValueError as exc:
            raise InvalidData(f"{what} field {name!r}: {exc}") from None


def _check_text(value: str) -> None:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None


def _repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} that cannot be shown as text>"
