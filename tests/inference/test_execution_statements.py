"""What a worker asks PostgreSQL to run one prediction, claim to settlement: every
statement costs the worker a round trip and holds the org's period lock longer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inference import execution, presence
from inference.models import Prediction, Status
from models_hub.demo import load_demo_catalog

pytestmark = pytest.mark.django_db(transaction=True)
WORKER = "statements@host"


@pytest.fixture(autouse=True)
def worker_present(settings) -> Iterator[None]:
    settings.IP_RATE_LIMIT_PER_MINUTE = 0
    presence.announce(WORKER, ["cpu"])
    yield
    presence.withdraw(WORKER, ["cpu"])


def admit_echo(client) -> str:
    body = {"model": "echo", "input": {"prompt": "a b c d", "tokens_per_second": 0}}
    response = client.post("/api/v1/predictions", body, content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_a_run_takes_seven_statements_and_records_its_queue_time(org, token_for, api_client):
    load_demo_catalog()
    client = api_client(token_for(org))
    execution.execute(admit_echo(client), WORKER)  # warms the process's caches
    prediction_id = admit_echo(client)
    with CaptureQueriesContext(connection) as captured:
        execution.execute(prediction_id, WORKER)
    # The claim (an UPDATE returning the row; the listing comes from the process's
    # cache); then one transaction: BEGIN, the terminal UPDATE returning what others may
    # have changed, the usage record with its period locked and whether a receipt exists,
    # the period's counters, the receipt, COMMIT.
    assert len(captured) == 7, [query["sql"][:80] for query in captured]
    prediction = Prediction.objects.get(pk=prediction_id)
    assert prediction.status == Status.SUCCEEDED
    waited = (prediction.started_at - prediction.created_at).total_seconds()
    assert prediction.queue_time == pytest.approx(waited, abs=1e-6)
