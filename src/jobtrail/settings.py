"""Settings read from ``JOBTRAIL_*`` environment variables; the only reader of ``os.environ``."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobtrail.exceptions import SettingsError, UnknownSetting

DEFAULT_DATABASE_URL = "sqlite:///jobtrail.db"


class Settings(BaseSettings):
    """Every tunable of jobtrail; an explicit argument to ``Tracker`` or a command wins."""

    model_config = SettingsConfigDict(env_prefix="JOBTRAIL_", frozen=True, extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    flush_interval: float = Field(0.25, ge=0, description="Seconds between progress writes.")
    heartbeat_interval: float = Field(10.0, gt=0, description="Seconds between heartbeats.")
    heartbeat_timeout: float = Field(60.0, gt=0, description="Heartbeat age that means lost.")
    grace_period: float = Field(30.0, ge=0, description="Seconds a stopping worker waits.")
    poll_interval: float = Field(0.5, gt=0, description="Seconds an idle worker sleeps.")
    concurrency: int = Field(4, ge=1, description="Worker threads.")
    auto_migrate: bool = Field(True, description="Create or upgrade the schema on first use.")
    pool_size: int = Field(10, ge=1, description="Connections kept per process (PostgreSQL).")
    statement_timeout: float = Field(
        30.0,
        ge=0,
        description="Seconds a PostgreSQL statement may run before it is cancelled (0: never).",
    )
    redact_patterns: list[str] = Field(
        default_factory=list, description="Extra regexes of key names whose values are redacted."
    )
    retention_succeeded_days: float = Field(3, ge=0, description="Keep succeeded jobs this long.")
    retention_other_days: float = Field(7, ge=0, description="Keep other finished jobs this long.")
    retention_max_days: float = Field(30, ge=0, description="Keep any finished job at most this.")
    purge_interval: float = Field(3600, gt=0, description="Seconds between a worker's purges.")
    rate_limit: str = Field(
        "600/second", description="Requests per token (or client) in `limits` notation."
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest accepted request body.")
    stream_poll_interval: float = Field(0.25, gt=0, description="Seconds between SSE polls.")
    max_error_chars: int = Field(32_768, ge=256, description="Longest stored traceback/message.")
    max_failed_items: int = Field(
        10_000,
        ge=1,
        description="Failed items listed per job run; past it they are counted, not listed.",
    )
    max_streams_per_caller: int = Field(
        20, ge=1, description="Open SSE/WebSocket streams per token (or client address)."
    )
    stream_auth_interval: float = Field(
        5.0, gt=0, description="Seconds between re-checks of an open stream's token."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins besides the server's own that may use the dashboard's cookie.",
    )
    metrics_public: bool = Field(False, description="Serve /metrics without an admin token.")
    metrics_max_kinds: int = Field(
        50, ge=1, description="Kinds and queues named in /metrics; the rest are 'other'."
    )
    auth_rate_limit: str = Field(
        "30/minute", description="Failed sign-ins and bad tokens per client address."
    )
    ratelimit_storage_url: str = Field(
        "memory://",
        description="Where outgoing limiters keep slots and wait counts (redis://… to share).",
    )
    ratelimit_default_rate: str = Field(
        "10/second", description="Rate of an outgoing limiter made without one."
    )
    startup_window: float = Field(
        60, gt=0, description="Seconds in which workers starting share one on_startup job."
    )
    alert_interval: float = Field(
        1.0, gt=0, description="Seconds between two evaluations of the alert rules."
    )
    alert_retention_days: float = Field(
        30, ge=0, description="Keep resolved alerts and sent notifications this long."
    )
    public_url: str = Field(
        "", description="The dashboard's address, for links in alerts (https://jobs.example.com)."
    )
    webhook_deliver: bool = Field(
        True, description="Deliver webhooks from this process's workers (a courier thread)."
    )
    webhook_poll_interval: float = Field(
        1.0, gt=0, description="Seconds between a courier's looks for due webhook deliveries."
    )
    webhook_timeout: float = Field(
        10.0, gt=0, description="Seconds a webhook request may take to connect, and to answer."
    )
    webhook_retry_for: float = Field(
        86400, gt=0, description="Seconds a failing webhook delivery is retried, then failed."
    )
    webhook_backoff: float = Field(
        5.0, gt=0, description="Seconds before a failed webhook delivery's first retry (doubling)."
    )
    webhook_allow_private: bool = Field(
        False, description="Let webhooks go to loopback and private addresses (never metadata)."
    )
    webhook_rotation_overlap: float = Field(
        86400, ge=0, description="Seconds a rotated webhook secret still signs beside the new one."
    )


def configure(base: Settings | None, overrides: Mapping[str, Any]) -> Settings:
    """``base`` (default: read from the environment) with ``overrides`` applied and validated
    exactly as the environment is; an unknown or invalid option raises, naming it."""
    for name in overrides:
        if name not in Settings.model_fields:
            close = difflib.get_close_matches(name, Settings.model_fields, n=1)
            raise UnknownSetting(name, close[0] if close else None)
    try:
        if base is None:
            return Settings(**overrides)
        return Settings.model_validate(base.model_dump() | dict(overrides))
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "settings"
        value = overrides.get(name, error.get("input"))
        raise SettingsError(name, value, error["msg"]) from None
