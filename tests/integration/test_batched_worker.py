"""A CPU worker with GENERATION_MAX_BATCH > 1 runs generations on a threads pool that
share one continuous batch: concurrent predictions through the real stack all succeed,
run at the same time in one process, and one canceled mid-batch stops while the others
finish."""

from __future__ import annotations

import threading

import httpx
import psutil
import pytest

from inference.models import Prediction, Status
from models_hub.demo import load_demo_catalog
from tests.livestack import Worker, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.models,
    pytest.mark.django_db(transaction=True),
]

PROMPTS = [
    "Name three colors.",
    "What is the capital of France?",
    "Count to five.",
    "Write one sentence about the sea.",
]


@pytest.fixture
def batched_worker(stack):
    """The stack's worker replaced by a batching one for the test, then restored."""
    stack.worker.stop()
    batched = Worker(queues="cpu,default", extra_env={"GENERATION_MAX_BATCH": "8"})
    batched.start(concurrency=None)
    stack.worker = batched
    yield batched
    batched.stop()
    replacement = Worker(queues="cpu,default")
    replacement.start(concurrency=2)
    stack.worker = replacement


def test_concurrent_generations_share_one_worker_process_and_cancel_alone(
    stack, batched_worker, org, token_for
):
    load_demo_catalog()
    client = httpx.Client(
        base_url=stack.base_url,
        headers={"Authorization": f"Bearer {token_for(org)}"},
        timeout=60,
    )
    ids: list[str] = []
    lock = threading.Lock()

    def create(prompt: str, max_new_tokens: int) -> None:
        body = {
            "model": "smollm2-135m-instruct",
            "input": {"prompt": prompt, "max_new_tokens": max_new_tokens, "temperature": 0},
        }
        response = client.post("/api/v1/predictions", json=body)
        assert response.status_code == 201, response.text
        with lock:
            ids.append(response.json()["id"])

    # The first one runs long enough to be canceled while the others are generating.
    create("Tell me a very long story about a dragon and a knight.", 400)
    long_id = ids[0]
    threads = [threading.Thread(target=create, args=(p, 24)) for p in PROMPTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    others = [pk for pk in ids if pk != long_id]
    wait_until(
        lambda: Prediction.objects.filter(pk__in=others, status=Status.SUCCEEDED).count() == 4,
        timeout=180,
    )
    response = client.post(f"/api/v1/predictions/{long_id}/cancel")
    assert response.status_code == 200, response.text
    wait_until(lambda: Prediction.objects.get(pk=long_id).status == Status.CANCELED, timeout=30)

    predictions = {p.pk: p for p in Prediction.objects.filter(pk__in=ids)}
    long = predictions[long_id]
    assert long.output and long.output_tokens < 400
    finished = [predictions[pk] for pk in others]
    assert all(p.output.strip() and 0 < p.output_tokens <= 24 for p in finished)
    # One worker process ran them all at once (threads: no pool children), each started
    # before any other ended.
    assert psutil.Process(batched_worker.process.pid).children() == []
    assert len({p.worker_host for p in predictions.values()}) == 1
    first_end = min(p.completed_at for p in finished)
    assert all(p.started_at < first_end for p in finished)
    assert long.started_at < first_end
