"""A worker dying mid-generation: every prediction still ends terminal, counted once."""

from __future__ import annotations

import time

import httpx
import pytest

from inference import reaper
from inference.models import Prediction, Status
from models_hub.demo import load_demo_catalog
from tests.integration.conftest import STACK_LEASE_SECONDS, Worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_sigkill_of_the_worker_mid_generation_never_leaves_a_prediction_processing(
    stack, org, token_for
):
    load_demo_catalog()
    headers = {"Authorization": f"Bearer {token_for(org)}"}
    body = {"model": "echo", "input": {"prompt": " ".join(["w"] * 300), "tokens_per_second": 50}}
    ids = []
    for _ in range(3):
        response = httpx.post(f"{stack.base_url}/api/v1/predictions", json=body, headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    wait_until(lambda: Prediction.objects.filter(pk__in=ids, status=Status.PROCESSING).exists())
    stack.worker.kill()
    # The dead worker's lease lapses; the periodic reaper then settles what it held.
    time.sleep(STACK_LEASE_SECONDS + 1)
    reaper.reap()
    replacement = Worker(queues="cpu,default")
    replacement.start(concurrency=2)
    stack.worker = replacement
    wait_until(
        lambda: (
            not Prediction.objects.filter(
                pk__in=ids, status__in=[Status.STARTING, Status.PROCESSING]
            ).exists()
        ),
        timeout=60,
    )
    for prediction in Prediction.objects.filter(pk__in=ids):
        assert prediction.status in (Status.SUCCEEDED, Status.FAILED)
        if prediction.status == Status.FAILED:
            assert "stopped unexpectedly" in prediction.error
        assert prediction.attempt == 1
    # The stream of a reaped prediction ends with `done` too.
    failed = Prediction.objects.filter(pk__in=ids, status=Status.FAILED).first()
    if failed is not None:
        with httpx.stream(
            "GET", f"{stack.base_url}/api/v1/predictions/{failed.pk}/stream", headers=headers
        ) as response:
            text = "".join(response.iter_text())
        assert "event: done" in text and "event: error" in text
