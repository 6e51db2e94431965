"""Redaction: secrets never reach the store, and no error text is too odd or too big to store."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from jobtrail import Status, Tracker
from jobtrail.redaction import MASK, Redactor, clean_text


def secret() -> str:
    """A fresh secret made at run time, so it cannot leak through a traceback's source lines."""
    return "s3cr3t" + secrets.token_hex(8)


def everything_stored(tracker: Tracker, job_id: str) -> str:
    """Every value jobtrail stored about a job, as text."""
    job = tracker.get(job_id)
    return repr((job, tracker.events(job_id), tracker.failed_items(job_id)))


# -- the redactor ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "password={}",
        "PASSWORD = {}",
        "Authorization: Bearer {}",
        "headers={{'Authorization': 'Bearer {}'}}",
        '{{"token": "{}"}}',
        '"access_token":"{}"',
        "GET /items?api_key={}&page=2",
        "client_secret: '{}'",
        "Cookie: {}",
    ],
)
def test_secret_values_in_text_are_masked(template: str) -> None:
    value = secret()
    redacted = Redactor().text(f"request failed: {template.format(value)} (retrying)")
    assert value not in redacted
    assert MASK in redacted
    assert redacted.startswith("request failed: ")
    assert redacted.endswith(" (retrying)")


def test_every_cookie_of_a_cookie_header_is_masked() -> None:
    first, second = secret(), secret()
    redacted = Redactor().text(f"Cookie: sessionid={first}; remember={second}")
    assert first not in redacted
    assert second not in redacted


def test_text_without_secrets_is_left_alone() -> None:
    text = "Processed 3 of 20 listings (page=2, region=eu): 1 timeout"
    assert Redactor().text(text) == text


def test_json_values_under_secret_keys_are_masked_at_any_depth() -> None:
    value = secret()
    redacted = Redactor().json(
        {
            "Password": value,
            "account": "A1",
            "nested": [{"api_key": value, "note": f"token={value}"}, 3, None, True],
        }
    )
    assert redacted == {
        "Password": MASK,
        "account": "A1",
        "nested": [{"api_key": MASK, "note": f"token={MASK}"}, 3, None, True],
    }


def test_configured_patterns_are_masked_too() -> None:
    value = secret()
    assert value in Redactor().text(f"session_ref={value}")
    assert value not in Redactor([r"session_ref"]).text(f"session_ref={value}")
    assert Redactor([r"session_ref"]).json({"session_ref": value}) == {"session_ref": MASK}


def test_values_json_cannot_hold_become_text() -> None:
    redacted = Redactor().json({"when": {1, 2}, "deep": [[[[1]]]]})
    assert redacted == {"when": "{1, 2}", "deep": [[[[1]]]]}


def test_absurdly_deep_json_is_cut_off() -> None:
    value: object = "bottom"
    for _ in range(100):
        value = [value]
    assert "[too deep]" in repr(Redactor().json(value))


def test_nul_and_lone_surrogates_are_replaced_with_storable_text() -> None:
    cleaned = clean_text("a\x00b\ud800c")
    assert "\x00" not in cleaned
    cleaned.encode("utf-8")  # raises if a lone surrogate survived
    assert cleaned.startswith("a")
    assert cleaned.endswith("c")
    assert clean_text("plain ünïcödé ✓") == "plain ünïcödé ✓"


def test_long_text_is_truncated_with_a_note() -> None:
    redacted = Redactor(max_chars=1000).text("word " * 1000)
    assert redacted.startswith("word " * 200)
    assert len(redacted) < 1100
    assert redacted.endswith("[4000 characters truncated]")


@pytest.mark.timeout(10)
def test_a_megabyte_without_spaces_is_redacted_quickly() -> None:
    blob = "A" * 1_000_000  # e.g. a base64 body echoed back in an error message
    redacted = Redactor(max_chars=32_768).text(f"upstream said: {blob}")
    assert len(redacted) < 33_000


# -- through the tracker -----------------------------------------------------------------


@pytest.fixture
def careful(database_url: str) -> Iterator[Tracker]:
    """A tracker that also treats ``session_ref`` as a secret."""
    with Tracker(database_url, flush_interval=0.05, redact_patterns=["session_ref"]) as t:
        yield t


def test_secrets_in_an_exception_are_never_stored(careful: Tracker) -> None:
    password, bearer, token, session = secret(), secret(), secret(), secret()
    message = (
        f"login failed: password={password}, Authorization: Bearer {bearer}, "
        f'body {{"token": "{token}"}}, session_ref={session}'
    )
    with pytest.raises(PermissionError), careful.track("import") as ctx:
        raise PermissionError(message)

    job = careful.get(ctx.job_id)
    assert job.status is Status.FAILED
    assert job.error_message is not None
    assert job.error_message.startswith("PermissionError: login failed: password=")
    assert "Traceback" in job.error_details["traceback"]
    stored = everything_stored(careful, ctx.job_id)
    for value in (password, bearer, token, session):
        assert value not in stored


def test_secrets_in_failed_items_and_logs_are_never_stored(careful: Tracker) -> None:
    token, password = secret(), secret()
    with careful.track("import") as ctx:
        ctx.log(f"calling upstream with token={token}", password=password, page=1)
        for row in ctx.items(["a", "b"]):
            with ctx.item(row):
                if row == "b":
                    raise ValueError(f"rejected Authorization: Bearer {token}")

    job = careful.get(ctx.job_id)
    assert job.status is Status.PARTIAL
    assert [i.item_id for i in careful.failed_items(job.id)] == ["b"]
    logs = [e for e in careful.events(job.id) if e.type == "log"]
    assert logs[0].data == {"password": MASK, "page": 1}
    stored = everything_stored(careful, job.id)
    assert token not in stored
    assert password not in stored


def test_an_exception_with_nul_surrogates_and_a_megabyte_of_text_is_stored(
    tracker: Tracker,
) -> None:
    message = "bad\x00byte \ud800 then " + "word " * 200_000
    with pytest.raises(RuntimeError), tracker.track("import") as ctx:
        raise RuntimeError(message)

    job = tracker.get(ctx.job_id)
    assert job.status is Status.FAILED
    assert job.error_message is not None
    assert job.error_message.startswith("RuntimeError: bad")
    assert "\x00" not in job.error_message
    assert "characters truncated" in job.error_message
    assert len(job.error_message) < 10_000
    traceback = job.error_details["traceback"]
    assert "characters truncated" in traceback
    assert len(traceback) <= tracker.settings.max_error_chars + 100
    assert "\x00" not in traceback


def test_a_failed_item_with_an_odd_or_huge_id_is_stored(tracker: Tracker) -> None:
    odd, huge = "row\x00\ud800", "x" * 5000
    with tracker.track("import") as ctx:
        for row in ctx.items([odd, huge, "fine"]):
            with ctx.item(row):
                if row != "fine":
                    raise ValueError("bad row\x00")

    job = tracker.get(ctx.job_id)
    assert job.status is Status.PARTIAL
    failed = tracker.failed_items(job.id)
    assert len(failed) == 2
    assert all("\x00" not in i.item_id and "\x00" not in i.message for i in failed)


def test_a_progress_message_with_nul_and_surrogates_is_stored_cleaned(tracker: Tracker) -> None:
    with tracker.track("import") as ctx:
        ctx.progress(50, "file bad\x00name\udcff.csv")

    job = tracker.get(ctx.job_id)
    assert job.status is Status.SUCCEEDED
    assert job.message is not None
    assert job.message.startswith("file bad")
    assert "\x00" not in job.message
