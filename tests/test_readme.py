"""The README's first example runs as written and prints what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    example = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    script = tmp_path / "example.py"
    script.write_text(example)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "succeeded 20 {'listings': 20}"
    assert (tmp_path / "jobs.db").exists()


def test_the_readme_names_every_setting_with_its_default() -> None:
    from jobtrail.settings import Settings

    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in README.read_text().splitlines()
        if line.startswith("| `JOBTRAIL_")
    }
    names = " ".join(rows)
    missing = []
    for name in Settings.model_fields:
        variable = f"JOBTRAIL_{name.upper()}"
        if variable not in names and f"_{name.upper().split('_', 1)[1]}`" not in names:
            missing.append(variable)
    assert missing == []
    for name in ("heartbeat_timeout", "statement_timeout", "max_streams_per_caller"):
        default = Settings.model_fields[name].default
        assert rows[f"`JOBTRAIL_{name.upper()}`"] == f"`{default:g}`"
