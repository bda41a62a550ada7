"""What admission and a prediction's end queue for the worker. The senders name the tasks
(they never import `inference.tasks`, which imports the worker side that sends them), so
these pin the names to the registered tasks, and the queue and time limits to the model's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inference import admission, presence, tasks
from inference.admission import PredictionRequest, admit
from inference.lifecycle import finish
from inference.models import Status
from inference.task_names import DELIVER_WEBHOOK, RUN_PREDICTION
from models_hub.demo import load_demo_catalog
from models_hub.models import ModelListing
from portal.auth import ALL_SCOPES, Principal
from portal.celery import app as celery_app

pytestmark = pytest.mark.django_db
WORKER = "dispatch-test-worker"


@pytest.fixture
def echo(db) -> ModelListing:
    return next(listing for listing in load_demo_catalog() if listing.slug == "echo")


@pytest.fixture
def worker_present(echo) -> Iterator[None]:
    presence.announce(WORKER, [echo.queue])
    yield
    presence.withdraw(WORKER, [echo.queue])


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, dict]]:
    """Each task sent, as `send_task`'s (name, options), instead of a message to the
    broker: the run goes through `publish_task`, whose message is `send_task`'s
    (tests/portal/test_broker.py)."""
    calls: list[tuple[str, dict]] = []

    def published(name: str, args: list, queue: str, **limits: int) -> None:
        calls.append((name, {"args": args, "queue": queue, **limits}))

    monkeypatch.setattr(
        celery_app, "send_task", lambda name, **options: calls.append((name, options))
    )
    monkeypatch.setattr(admission, "publish_task", published)
    return calls


def test_the_names_sent_are_the_registered_tasks():
    # `shared_task` gives a proxy of the app's task.
    assert celery_app.tasks[RUN_PREDICTION] is tasks.run_prediction._get_current_object()
    assert celery_app.tasks[DELIVER_WEBHOOK] is tasks.deliver_webhook._get_current_object()


def test_the_run_goes_to_the_models_queue_with_its_time_limits_and_webhooks_follow(
    org, owner, echo, worker_present, receiver, sent, django_capture_on_commit_callbacks
):
    request = PredictionRequest(
        model="echo",
        input={"prompt": "hi", "max_new_tokens": 4},
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )
    principal = Principal(org=org, user=owner, token=None, scopes=ALL_SCOPES)
    with django_capture_on_commit_callbacks(execute=True):
        prediction = admit(principal, request)
    limits = echo.time_limits()
    assert sent == [
        (
            RUN_PREDICTION,
            {
                "args": [prediction.id],
                "queue": echo.queue,
                "soft_time_limit": limits.soft,
                "time_limit": limits.hard,
            },
        ),
        (DELIVER_WEBHOOK, {"args": [prediction.id, "start"]}),
    ]
    assert finish(prediction, Status.CANCELED, from_status=Status.STARTING)
    assert sent[2:] == [(DELIVER_WEBHOOK, {"args": [prediction.id, "completed"]})]
