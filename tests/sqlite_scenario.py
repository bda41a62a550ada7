"""Scenarios run in a subprocess on SQLite, the embedded default of `make run` (the test
database is PostgreSQL): a scenario module calls `main(scenario)` as its entry point, and
a test calls `seen_on_sqlite(module, tmp_path)` for what the scenario returned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(scenario: Callable[[], dict[str, object]]) -> None:
    """Migrates the SQLite file named on the command line, runs `scenario`, prints JSON."""
    os.environ["DATABASE_URL"] = f"sqlite:///{sys.argv[1]}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(json.dumps(scenario()))


def seen_on_sqlite(module: str, tmp_path: Path) -> dict[str, object]:
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", module, str(tmp_path / "portal.sqlite3")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
