"""`make run` serves from SQLite: the worker's claim, run and finish work there too (the
claim once computed the queue time with a duration extract SQLite does not have)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_prediction_runs_end_to_end_on_sqlite(tmp_path):
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.inference.sqlite_run", str(tmp_path / "portal.sqlite3")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {
        "status": "succeeded",
        "output": "hello there",
        "error": "",
        "attempt": 1,
        "queue_time_matches": True,
    }
