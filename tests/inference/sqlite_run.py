"""A prediction admitted and run by the worker's code on SQLite, the embedded default of
`make run`: run by tests/inference/test_sqlite_run.py as

    python -m tests.inference.sqlite_run <database file>

with REDIS_URL set; prints what it saw as JSON."""

from __future__ import annotations

from tests.sqlite_scenario import main


def scenario() -> dict[str, object]:
    from django.contrib.auth import get_user_model

    from inference import execution, presence
    from inference.admission import PredictionRequest, admit
    from inference.models import Prediction
    from models_hub.demo import load_demo_catalog
    from portal.auth import ALL_SCOPES, Principal
    from portal.models import Organization

    load_demo_catalog()
    user = get_user_model().objects.create(username="sqlite-run@example.com")
    org = Organization.objects.create(slug="sqlite-run", name="S", free_allowance=True)
    presence.announce("sqlite-run@host", ["cpu", "default"])
    try:
        principal = Principal(org=org, user=user, token=None, scopes=ALL_SCOPES)
        admitted = admit(principal, PredictionRequest("echo", {"prompt": "hello there"}))
        execution.execute(admitted.id, "sqlite-run@host")
    finally:
        presence.withdraw("sqlite-run@host", ["cpu", "default"])
    prediction = Prediction.objects.get(pk=admitted.id)
    return {
        "status": prediction.status,
        "output": prediction.output,
        "error": prediction.error,
        "attempt": prediction.attempt,
        # The claim computes it in SQL from the same `now` it writes to started_at.
        "queue_time_matches": abs(
            prediction.queue_time - (prediction.started_at - prediction.created_at).total_seconds()
        )
        < 1e-3,
    }


if __name__ == "__main__":
    main(scenario)
