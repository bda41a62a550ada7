"""`make run` serves from SQLite: the worker's claim, run and finish work there too (the
claim once computed the queue time with a duration extract SQLite does not have)."""

from __future__ import annotations

from tests.sqlite_scenario import seen_on_sqlite


def test_a_prediction_runs_end_to_end_on_sqlite(tmp_path):
    seen = seen_on_sqlite("tests.inference.sqlite_run", tmp_path)
    assert seen == {
        "status": "succeeded",
        "output": "hello there",
        "error": "",
        "attempt": 1,
        "queue_time_matches": True,
    }
