"""Runs one claimed prediction in a worker: runner events -> event log -> terminal state."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection

from inference import events, services
from inference.models import Prediction, Status
from inference.runners import get_runner
from inference.runners.base import EventType, FinishReason, Result
from portal.logs import prediction_context

logger = logging.getLogger(__name__)
MODEL_FAILURE = "The model failed while running this input."


@contextmanager
def lease_heartbeat(prediction_id: str) -> Iterator[None]:
    """Renews the prediction's lease while this process works on it, model loading
    included; a worker that dies stops renewing and the reaper takes over."""
    stop = threading.Event()
    interval = settings.PREDICTION_LEASE_SECONDS / 3

    def beat() -> None:
        while not stop.wait(interval):
            services.renew_lease(prediction_id)
        connection.close()

    thread = threading.Thread(target=beat, name=f"lease-{prediction_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def execute(prediction_id: str, worker_host: str) -> None:
    org_id = Prediction.objects.filter(pk=prediction_id).values_list("org_id", flat=True).first()
    with prediction_context(prediction_id, org_id):
        _execute(prediction_id, worker_host)


def _execute(prediction_id: str, worker_host: str) -> None:
    prediction = services.claim(prediction_id, worker_host)
    if prediction is None:
        # Already terminal (nothing to do), or redelivered after its worker died.
        services.fail_if_abandoned(prediction_id)
        return
    try:
        with lease_heartbeat(prediction.id):
            result, logs = _run(prediction)
    except SoftTimeLimitExceeded:
        services.finish(prediction, Status.FAILED, error="The prediction exceeded its time limit.")
        return
    except Exception:
        logger.exception("prediction %s failed", prediction_id)
        services.finish(prediction, Status.FAILED, error=MODEL_FAILURE)
        return
    canceled = result.finish_reason == FinishReason.CANCELED
    services.finish(
        prediction,
        Status.CANCELED if canceled else Status.SUCCEEDED,
        output=result.output,
        logs=logs,
        input_tokens=result.metrics.input_tokens,
        output_tokens=result.metrics.output_tokens,
        from_status=Status.PROCESSING,
    )


def _run(prediction: Prediction) -> tuple[Result, str]:
    spec = prediction.model.runtime_spec
    runner = get_runner(spec.task)
    log_lines: list[str] = []
    result: Result | None = None
    should_cancel = partial(services.cancel_requested, prediction.id)
    for event in runner.run(spec, prediction.input, should_cancel):
        if event.type == EventType.OUTPUT:
            events.append(prediction.id, "output", event.data)
            services.notify_output(prediction)
        elif event.type == EventType.LOG:
            log_lines.append(event.data)
            events.append(prediction.id, "log", event.data)
        else:
            result = event.data
    if result is None:
        raise RuntimeError("runner ended without a result")
    return result, "\n".join(log_lines)
