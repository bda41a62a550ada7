"""A worker dying mid-generation: every prediction still ends terminal, counted once.

The guarantee: a prediction whose worker dies (SIGKILL of the whole host: no chance to
reject or requeue) fails with a clear error once its lease lapses, whichever of the
reaper (Celery beat) and the broker's redelivery of the task gets there first; it never
runs twice, and the usage ledger charges it once (a request only if it succeeded).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from billing import metering
from billing.models import CallCost, UsagePeriod, UsageRecord
from inference import events, reaper
from inference.models import Prediction, Status
from inference.tasks import run_prediction
from models_hub.demo import load_demo_catalog
from tests.integration.conftest import STACK_LEASE_SECONDS, Worker, wait_until
from tests.livestack import send_to_stack

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
    processing = Prediction.objects.filter(pk__in=ids, status=Status.PROCESSING)
    # Both of the worker's processes busy: the third waits in the broker's queue.
    wait_until(lambda: processing.count() == 2)
    stack.worker.kill()
    held = set(processing.values_list("pk", flat=True))
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
    predictions = Prediction.objects.filter(pk__in=ids)
    # What the dead worker held fails; the queued one runs on the replacement; none twice.
    assert {p.pk: p.status for p in predictions} == {
        pk: Status.FAILED if pk in held else Status.SUCCEEDED for pk in ids
    }
    assert [p.attempt for p in predictions] == [1, 1, 1]
    assert all("stopped unexpectedly" in p.error for p in predictions if p.pk in held)
    # The stream of a reaped prediction ends with `done` too.
    with httpx.stream(
        "GET", f"{stack.base_url}/api/v1/predictions/{min(held)}/stream", headers=headers
    ) as response:
        text = "".join(response.iter_text())
    assert "event: done" in text and "event: error" in text


# --- kill -9 during 20 concurrent generations: terminal, and charged exactly once -------

CONCURRENT = 20
# 30 tokens at 20/s: 1.5 s each, 15 s of work on two worker processes.
BURST_BODY = {"model": "echo", "input": {"prompt": " ".join(["t"] * 30), "tokens_per_second": 20}}


def _admit_concurrently(base_url: str, token: str) -> list[str]:
    def post(_: int) -> str:
        response = httpx.post(
            f"{base_url}/api/v1/predictions",
            json=BURST_BODY,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        return list(pool.map(post, range(CONCURRENT)))


def _redeliver(ids: list[str]) -> None:
    """What the broker does with a dead worker's unacknowledged message (after the
    visibility timeout): deliver the same task again, here at once."""
    for prediction in Prediction.objects.filter(pk__in=ids):
        send_to_stack(run_prediction, prediction.pk, queue=prediction.queue)


def _all_terminal(ids: list[str]) -> bool:
    reaper.reap()  # as Celery beat does every REAPER_INTERVAL_SECONDS
    pending = Prediction.objects.filter(pk__in=ids, status__in=[Status.STARTING, Status.PROCESSING])
    return not pending.exists()


def _request_count(prediction: Prediction) -> int:
    return int(prediction.status == Status.SUCCEEDED or prediction.output_tokens > 0)


def _assert_charged_once(org, predictions: list[Prediction]) -> None:
    """One reservation and one settlement entry per prediction; a request is charged only
    for a call that succeeded or delivered output; the period's counters are exactly the
    sums of the receipts, with nothing left reserved."""
    reserved = set(UsageRecord.objects.filter(org=org).values_list("prediction_id", flat=True))
    assert reserved == {p.pk for p in predictions}
    records = {r.prediction_id: r for r in CallCost.objects.filter(org=org)}
    assert set(records) == {p.pk for p in predictions}
    for prediction in predictions:
        record = records[prediction.pk]
        assert record.requests == _request_count(prediction)
        assert record.input_tokens == prediction.input_tokens
        assert record.output_tokens == metering.delivered_output_tokens(prediction)
    period = UsagePeriod.objects.get(org=org)
    assert period.requests == sum(_request_count(p) for p in predictions)
    assert (period.allowance_reserved, period.paid_reserved) == (0, 0)
    assert period.input_tokens == sum(r.input_tokens for r in records.values())
    assert period.output_tokens == sum(r.output_tokens for r in records.values())


def _assert_one_done_event(prediction_id: str) -> None:
    log = events.read_after(prediction_id, 0)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert [e.type for e in log].count("done") == 1
    assert log[-1].type == "done"


@pytest.mark.timeout(240)
def test_sigkill_during_twenty_generations_ends_all_terminal_and_charges_once(
    stack, org, token_for
):
    load_demo_catalog()
    ids = _admit_concurrently(stack.base_url, token_for(org))
    in_flight = Prediction.objects.filter(pk__in=ids)
    # Kill once some have finished and others are mid-generation.
    wait_until(
        lambda: (
            in_flight.filter(status=Status.SUCCEEDED).count() >= 2
            and in_flight.filter(status=Status.PROCESSING).exists()
        ),
        timeout=90,
    )
    stack.worker.kill()
    killed = list(in_flight.filter(status=Status.PROCESSING).values_list("pk", flat=True))
    assert killed, "no generation was in flight at the kill"
    replacement = Worker(queues="cpu,default")
    replacement.start(concurrency=2)
    stack.worker = replacement
    # The dead worker may also hold queued tasks it had fetched but not started; the
    # broker hands those back after its visibility timeout, here at once.
    unfinished = list(
        in_flight.filter(status__in=[Status.STARTING, Status.PROCESSING]).values_list(
            "pk", flat=True
        )
    )
    # Redelivered while the dead worker's lease still runs: the task must leave it alone.
    _redeliver(unfinished)
    time.sleep(STACK_LEASE_SECONDS + 1)
    # Redelivered after the lease lapsed, racing the reaper: one of them fails it, once.
    _redeliver(killed)
    wait_until(lambda: _all_terminal(ids), timeout=120, interval=0.5)

    predictions = list(Prediction.objects.filter(pk__in=ids))
    for prediction in predictions:
        assert prediction.attempt == 1, "a prediction ran twice"
        if prediction.pk in killed:
            assert prediction.status == Status.FAILED
            assert "stopped unexpectedly" in prediction.error
        else:
            assert prediction.status == Status.SUCCEEDED, prediction.error
            assert prediction.output == BURST_BODY["input"]["prompt"]
        _assert_one_done_event(prediction.pk)
    _assert_charged_once(org, predictions)
