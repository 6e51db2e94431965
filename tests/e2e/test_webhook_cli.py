"""``jobtrail webhooks`` through the real executable: add prints the secret once, ls never
shows it, deliveries lists a job's log with its attempts, replay and rm."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jobtrail import Context, Tracker
from jobtrail.courier import Courier
from tests.webhook_receiver import serving

JOBTRAIL = str(Path(sys.executable).parent / "jobtrail")


def jobtrail(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTRAIL_")}
    env["JOBTRAIL_DATABASE_URL"] = url
    return subprocess.run(
        [JOBTRAIL, "webhooks", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_webhooks_commands_manage_subscriptions_and_read_the_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    Tracker(url).open().close()
    with serving() as receiver:
        added = jobtrail(url, "add", receiver.url, "--allow-private", "--type", "job.created")
        assert added.returncode == 0, added.stderr
        webhook_id, secret = added.stdout.split()
        assert secret.startswith("whsec_")
        receiver.secrets.append(secret)
        listed = jobtrail(url, "ls")
        assert webhook_id in listed.stdout
        assert "job.created" in listed.stdout
        assert secret not in listed.stdout

        with Tracker(url) as tracker:

            @tracker.job("noop")
            def noop(ctx: Context) -> None: ...

            job = noop.submit()
            Courier.of(tracker.runtime).turn()
        assert len(receiver.accepted()) == 1

        log = jobtrail(url, "deliveries", job.id)
        assert log.returncode == 0, log.stderr
        delivery_id = log.stdout.split()[0]
        assert "job.created\tdelivered" in log.stdout
        assert "\t200\t" in log.stdout

        replayed = jobtrail(url, "replay", delivery_id)
        assert "pending" in replayed.stdout
        assert jobtrail(url, "rm", webhook_id).returncode == 0
        assert jobtrail(url, "rm", webhook_id).returncode == 1  # gone
