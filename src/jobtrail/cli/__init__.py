"""The ``jobtrail`` command line: the group every command hangs from, the entry point ``main``."""

from __future__ import annotations

import click

from jobtrail.cli.alert_commands import alerts
from jobtrail.cli.job_commands import jobs, schedules, stats, submit, workers
from jobtrail.cli.service import db, demo, purge, serve, tokens, worker
from jobtrail.cli.webhook_commands import webhooks
from jobtrail.logs import configure_logging

__all__ = ["main"]


@click.group()
@click.version_option(package_name="jobtrail")
def main() -> None:
    """jobtrail: what every background job is doing."""
    configure_logging()  # the command owns its process: its lines go to stderr at INFO


commands: tuple[click.Command, ...] = (
    worker,
    purge,
    serve,
    tokens,
    db,
    demo,
    jobs,
    submit,
    stats,
    schedules,
    workers,
)
commands += (alerts,)
commands += (webhooks,)
for command in commands:
    main.add_command(command)
