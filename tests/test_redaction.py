"""Redaction: secrets never reach the store, and no error text is too odd or too big to store."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
import structlog

from jobtrail import Context, Status, Tracker, configure_logging
from jobtrail.jobs import NewJob
from jobtrail.redaction import MASK, Redactor, clean_text
from tests.structlog_state import configured_as_before


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


# -- credentials in URLs, AWS keys, and every way text reaches the store ---------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgres://u:{}@h/db", f"postgres://u:{MASK}@h/db"),
        ("redis://:{}@cache:6379/0", f"redis://:{MASK}@cache:6379/0"),
        (
            "connect failed (amqp://guest:{}@broker//) twice",
            f"connect failed (amqp://guest:{MASK}@broker//) twice",
        ),
    ],
)
def test_passwords_in_urls_are_masked_and_the_rest_of_the_url_kept(text: str, shown: str) -> None:
    value = secret()
    assert Redactor().text(text.format(value)) == shown


@pytest.mark.parametrize("key_id", ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"])
def test_aws_access_key_ids_are_masked(key_id: str) -> None:
    assert Redactor().text(f"signing with {key_id}, region eu-west-1") == (
        f"signing with {MASK}, region eu-west-1"
    )


@pytest.mark.parametrize(
    "text",
    [
        "https://example.test:8443/path?page=2",
        "see http://example.test/a@b and user:name@host",
        "AKIA is a prefix; AKIAIOSFODNN7EXAMPLEX is too long; xAKIAIOSFODNN7EXAMPLE too",
    ],
)
def test_urls_without_passwords_and_lookalike_keys_are_left_alone(text: str) -> None:
    assert Redactor().text(text) == text


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "blob",
    [
        "://" * 400_000,
        "a://b:" * 200_000,
        "x://u:" + "p" * 1_000_000,
        "AKIA" * 300_000,
        "ASIA" + "A" * 1_000_000,
    ],
    ids=["separators", "user-colon", "long-password", "akia-run", "asia-run"],
)
def test_a_megabyte_of_url_or_key_lookalikes_is_redacted_in_linear_time(blob: str) -> None:
    started = time.perf_counter()
    Redactor(max_chars=2_000_000).text(blob)
    assert time.perf_counter() - started < 2.0


def test_a_report_stores_its_text_and_json_redacted(careful: Tracker) -> None:
    values = [secret() for _ in range(6)]
    job, _ = careful.add(NewJob("remote", status=Status.RUNNING))
    careful.report(job.id, {"message": f"syncing with token={values[0]}"})
    careful.report(
        job.id,
        {
            "error_message": f"could not reach postgres://app:{values[1]}@db/prod",
            "result": {"password": values[2], "note": "key AKIAIOSFODNN7EXAMPLE"},
            "progress_data": {"api_key": values[3], "page": 3},
            "error_details": {"session_ref": values[4], "hint": f"secret={values[5]}"},
        },
        Status.FAILED,
    )

    stored = careful.get(job.id)
    assert stored.status is Status.FAILED
    assert stored.error_message == f"could not reach postgres://app:{MASK}@db/prod"
    assert stored.result == {"password": MASK, "note": f"key {MASK}"}
    assert stored.progress_data == {"api_key": MASK, "page": 3}
    everything = everything_stored(careful, job.id)
    assert "AKIAIOSFODNN7EXAMPLE" not in everything
    for value in values:
        assert value not in everything


def test_labels_under_secret_keys_are_stored_masked(careful: Tracker) -> None:
    @careful.job("sync")
    def sync(ctx: Context) -> None: ...

    value = secret()
    submitted = sync.submit(labels={"team": "ops", "auth_token": value})
    added, _ = careful.add(NewJob("remote", labels={"password": value}))

    assert careful.get(submitted.id).labels == {"team": "ops", "auth_token": MASK}
    assert careful.get(added.id).labels == {"password": MASK}


def test_progress_messages_and_failed_item_ids_are_stored_and_logged_redacted(
    careful: Tracker, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, item, logged = secret(), secret(), secret()
    with configured_as_before(), careful.track("import") as ctx:
        structlog.reset_defaults()
        configure_logging()  # as the ``jobtrail`` command does: lines to stderr
        ctx.progress(10, f"connecting to postgres://u:{dsn}@h/db")
        ctx.flush()
        ctx.log("calling upstream", authorization=logged, page=1)
        with ctx.item(f"https://bot:{item}@files.test/a.csv"):
            raise ValueError("rejected")
        ctx.progress(50, "half way")

    job = careful.get(ctx.job_id)
    [failed] = careful.failed_items(job.id)
    assert failed.item_id == f"https://bot:{MASK}@files.test/a.csv"
    assert job.error_details["failed_items"] == [failed.item_id]
    messages = [e.message for e in careful.events(job.id) if e.type == "progress"]
    assert messages == [f"connecting to postgres://u:{MASK}@h/db", "half way"]
    output = capsys.readouterr().err
    assert "item failed" in output
    assert "calling upstream" in output
    for value in (dsn, item, logged):
        assert value not in output
        assert value not in everything_stored(careful, job.id)


def test_a_retry_of_failed_items_finds_items_whose_ids_were_redacted(tracker: Tracker) -> None:
    rows = ["https://bot:pw1@files.test/a.csv", "plain-b", "https://bot:pw2@files.test/c.csv"]
    ran: list[str] = []

    @tracker.job("import")
    def run(ctx: Context, fail: bool) -> None:
        for row in ctx.items(rows):
            with ctx.item(row):
                ran.append(row)
                if fail and row != "plain-b":
                    raise ValueError("rejected")

    first = run.submit(fail=True)
    tracker.worker(1, poll_interval=0.01).run(burst=True)
    retry = tracker.retry(first.id, only_failed_items=True)
    ran.clear()
    tracker.worker(1, poll_interval=0.01).run(burst=True)

    assert ran == [rows[0], rows[2]]
    again = tracker.get(retry.id)
    assert (again.items_succeeded, again.items_failed) == (1, 2)


def test_a_handlers_result_is_stored_with_secrets_masked(careful: Tracker) -> None:
    value = secret()

    @careful.job("connect")
    def connect(ctx: Context) -> dict[str, str]:
        return {"dsn": f"postgres://u:{value}@h/db", "token": value, "rows": "12"}

    job = connect.submit()
    careful.worker(1, poll_interval=0.01).run(burst=True)

    done = careful.get(job.id)
    assert done.status is Status.SUCCEEDED
    assert done.result == {"dsn": f"postgres://u:{MASK}@h/db", "token": MASK, "rows": "12"}
