"""``jobtrail alerts``: the alerts firing now and recently; ``alerts rules``, ``alerts add`` and
``alerts rm`` for the rules — on the store or a server (an admin token's), channels shown as
redacted labels only."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import click
from pydantic import TypeAdapter

from jobtrail.alerts import AlertPage, AlertRule, AlertRuleInfo
from jobtrail.cli.client import ConsoleError, HttpBackend, parse
from jobtrail.cli.source import Source, job_source
from jobtrail.cli.views import console, printable, table, to_json, when
from jobtrail.jobs import JSON


def _ask(source: Source, method: str, path: str, **options: Any) -> Any:
    """The JSON answer of the server of ``source`` (None: no content)."""
    import httpx

    assert source.url is not None
    remote = HttpBackend(source.url, source.token)
    with remote.client:
        try:
            response = remote.client.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise ConsoleError(f"cannot reach {remote.base}: {exc}") from exc
        if not response.is_success:
            remote.refuse(response, None)
        return response.json() if response.content else None


def _page(source: Source, rule: str | None, status: str | None, limit: int) -> AlertPage:
    if source.url:
        given = {"rule": rule, "status": status, "limit": limit}
        answer = _ask(source, "GET", "/alerts", params={k: v for k, v in given.items() if v})
        return parse(TypeAdapter(AlertPage), answer)
    with source.tracker() as tracker:
        return tracker.alerts.page(rule=rule, status=status, limit=limit)


def _rules(source: Source) -> list[AlertRuleInfo]:
    if source.url:
        return parse(TypeAdapter(list[AlertRuleInfo]), _ask(source, "GET", "/alert-rules"))
    with source.tracker() as tracker:
        return tracker.alerts.rules()


def _pairs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` options as a dict (for ``--param``, the value read as JSON if it is)."""
    found: dict[str, Any] = {}
    for text in value:
        key, equals, given = text.partition("=")
        if not key or not equals:
            raise click.BadParameter(f"{text!r} is not KEY=VALUE (e.g. group_window=600)")
        found[key] = given
        if param.name == "params":
            with contextlib.suppress(ValueError):  # else a word: the string itself
                found[key] = json.loads(given)
    return found


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


@click.group(invoke_without_command=True)
@click.option("--rule", help="Only this rule's alerts.")
@click.option("--status", type=click.Choice(["firing", "resolved"]), help="Only these.")
@click.option(
    "--limit", type=click.IntRange(1, 200), default=50, show_default=True, help="How many."
)
@json_option
@job_source
@click.pass_context
def alerts(
    ctx: click.Context,
    source: Source,
    rule: str | None,
    status: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List alerts, newest first: firing now and resolved. `alerts rules`, `alerts add` and
    `alerts rm`: the rules."""
    if ctx.invoked_subcommand is not None:
        return
    page = _page(source, rule, status, limit)
    if as_json:
        click.echo(to_json(page.alerts))
    elif not page.alerts:
        click.echo("no alert")
    else:
        rows = [
            (
                a.status,
                printable(a.rule),
                printable(a.scope_key),
                str(a.count),
                when(a.first_at),
                when(a.resolved_at) if a.resolved_at else "",
                printable(a.summary)[:120],
            )
            for a in page.alerts
        ]
        columns = ["status", "rule", "scope", "count", "since", "resolved", "summary"]
        console().print(table(columns, rows))


@alerts.command("rules")
@json_option
@job_source
def rules(source: Source, as_json: bool) -> None:
    """List the alert rules: condition, scope, parameters, channels (labels only)."""
    found = _rules(source)
    if as_json:
        click.echo(to_json(found))
    elif not found:
        click.echo("no alert rule")
    else:
        rows = [
            (
                printable(r.name),
                r.condition,
                printable(", ".join(f"{k}={v}" for k, v in r.scope.items() if v)),
                ", ".join(f"{k}={v}" for k, v in r.params.items() if v is not None),
                ", ".join(r.channels),
                r.source + ("" if r.enabled else " (disabled)"),
            )
            for r in found
        ]
        columns = ["rule", "condition", "scope", "params", "channels", "source"]
        console().print(table(columns, rows))


@alerts.command("add")
@click.argument("name")
@click.argument("condition")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    required=True,
    help='An apprise URL (repeatable); from a variable, to keep it out of the history: "$URL".',
)
@click.option("--kind", help="Only jobs of this kind.")
@click.option("--queue", help="Only jobs on this queue.")
@click.option("--owner", help="Only this owner's jobs.")
@click.option("--label", "labels", multiple=True, callback=_pairs, help="KEY=VALUE (repeatable).")
@click.option(
    "--param", "params", multiple=True, callback=_pairs, help="KEY=VALUE, e.g. group_window=600."
)
@job_source
def add(
    source: Source,
    name: str,
    condition: str,
    channels: tuple[str, ...],
    kind: str | None,
    queue: str | None,
    owner: str | None,
    labels: dict[str, str],
    params: dict[str, JSON],
) -> None:
    """Store an alert rule (replacing one of its name): CONDITION is failed, failure_rate,
    stalled, queue_unconsumed, queue_age, schedule_missed, worker_lost or webhook_disabled."""
    if source.url:
        body: dict[str, Any] = {"name": name, "condition": condition, "channels": list(channels)}
        body |= {"kind": kind, "queue": queue, "owner": owner, "labels": labels or None}
        answer = _ask(source, "POST", "/alert-rules", json=body | {"params": params})
        shown = parse(TypeAdapter(AlertRuleInfo), answer)
    else:
        rule = AlertRule.of(
            name,
            condition,
            channels=list(channels),
            kind=kind,
            queue=queue,
            owner=owner,
            labels=labels or None,
            **params,
        )
        with source.tracker() as tracker:
            shown = tracker.alerts.save(rule)
    click.echo(f"alert rule {shown.name}: {shown.condition}, to {', '.join(shown.channels)}")


@alerts.command("rm")
@click.argument("name")
@job_source
def remove(source: Source, name: str) -> None:
    """Delete an alert rule (its firing alerts close silently)."""
    if source.url:
        _ask(source, "DELETE", f"/alert-rules/{name}")
    else:
        with source.tracker() as tracker:
            tracker.alerts.delete(name)
    click.echo(f"alert rule {name} deleted")
