"""``jobtrail webhooks``: list, add and remove subscriptions, read a job's delivery log, replay
a delivery — as an admin, on the store directly."""

from __future__ import annotations

import click

from jobtrail.cli.source import database_option, existing_tracker, one_line_errors
from jobtrail.webhooks import Delivery


@click.group()
def webhooks() -> None:
    """Webhook subscriptions and their deliveries (docs/webhooks.md)."""


@webhooks.command("ls")
@database_option
@one_line_errors
def webhooks_ls(database_url: str | None) -> None:
    """List subscriptions (never their secrets)."""
    with existing_tracker(database_url) as tracker:
        for hook in tracker.webhooks.list(limit=10_000):
            state = "enabled" if hook.enabled else f"disabled ({hook.disabled_reason})"
            scope = f"owner={hook.owner}" if hook.owner else "every owner"
            types = ",".join(hook.event_types or ["all types"])
            click.echo(f"{hook.id}\t{hook.url}\t{scope}\t{types}\t{state}")


@webhooks.command("add")
@database_option
@click.argument("url")
@click.option("--owner", help="Only this owner's jobs (default: every owner's).")
@click.option("--type", "types", multiple=True, help="An event type, e.g. job.failed (repeat).")
@click.option("--kind", "kinds", multiple=True, help="Only jobs of this kind (repeat).")
@click.option("--queue", "queues", multiple=True, help="Only jobs on this queue (repeat).")
@click.option("--allow-private", is_flag=True, help="Allow a loopback or private address.")
@one_line_errors
def webhooks_add(
    database_url: str | None,
    url: str,
    owner: str | None,
    types: tuple[str, ...],
    kinds: tuple[str, ...],
    queues: tuple[str, ...],
    allow_private: bool,
) -> None:
    """Subscribe URL; prints its id, then its signing secret (shown only now)."""
    with existing_tracker(database_url) as tracker:
        hook, secret = tracker.webhooks.subscribe(
            url,
            owner=owner,
            event_types=types or None,
            kinds=kinds or None,
            queues=queues or None,
            allow_private=allow_private,
            actor="cli",
        )
    click.echo(hook.id)
    click.echo(secret)


@webhooks.command("rm")
@database_option
@click.argument("webhook_id")
@one_line_errors
def webhooks_rm(database_url: str | None, webhook_id: str) -> None:
    """Delete a subscription."""
    with existing_tracker(database_url) as tracker:
        tracker.webhooks.delete(webhook_id)
    click.echo(f"deleted {webhook_id}")


@webhooks.command("deliveries")
@database_option
@click.argument("job_id")
@one_line_errors
def webhooks_deliveries(database_url: str | None, job_id: str) -> None:
    """A job's delivery log: each delivery and its attempts."""
    with existing_tracker(database_url) as tracker:
        for delivery in tracker.webhooks.job_deliveries(job_id):
            click.echo(_line(delivery))
            for attempt in delivery.tries:
                answer = attempt.status_code if attempt.status_code is not None else "-"
                error = f"\t{attempt.error}" if attempt.error else ""
                click.echo(f"  {attempt.at:%H:%M:%S}\t{answer}\t{attempt.duration:.3f}s{error}")


@webhooks.command("replay")
@database_option
@click.argument("delivery_id")
@one_line_errors
def webhooks_replay(database_url: str | None, delivery_id: str) -> None:
    """Send a delivery again (same webhook-id and body)."""
    with existing_tracker(database_url) as tracker:
        click.echo(_line(tracker.webhooks.replay(delivery_id)))


def _line(delivery: Delivery) -> str:
    return (
        f"{delivery.id}\t{delivery.type}\t{delivery.status}\t"
        f"attempts={delivery.attempts}\t{delivery.subscription_id}"
    )
