"""Runs one claimed prediction in a worker: runner events -> event log -> terminal state."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection

from inference import files, lifecycle
from inference.images import image_fields
from inference.models import Prediction, Status
from inference.runners import get_runner
from inference.runners.base import EventType, FinishReason, Result
from portal.errors import InvalidInput
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
            lifecycle.renew_lease(prediction_id)
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
    prediction = lifecycle.claim(prediction_id, worker_host)
    if prediction is None:
        # Already terminal (nothing to do), or redelivered after its worker died.
        lifecycle.fail_if_abandoned(prediction_id)
        return
    delivery = Delivery(partial(lifecycle.cancel_requested, prediction.id))
    try:
        with lease_heartbeat(prediction.id):
            result, logs = _run(prediction, delivery)
    except InvalidInput as exc:
        # An input the web admitted without counting its tokens (see
        # `inference.tokenizing.token_counter`), refused by the same check here.
        lifecycle.finish(prediction, Status.FAILED, error=exc.message, **delivery.failed_counts())
        return
    except SoftTimeLimitExceeded:
        lifecycle.finish(
            prediction,
            Status.FAILED,
            error="The prediction exceeded its time limit.",
            **delivery.failed_counts(),
        )
        return
    except Exception:
        logger.exception("prediction %s failed", prediction_id)
        lifecycle.finish(prediction, Status.FAILED, error=MODEL_FAILURE, **delivery.failed_counts())
        return
    canceled = result.finish_reason == FinishReason.CANCELED
    lifecycle.finish(
        prediction,
        Status.CANCELED if canceled else Status.SUCCEEDED,
        output=result.output,
        logs=logs,
        input_tokens=result.metrics.input_tokens,
        output_tokens=result.metrics.output_tokens,
        # Only a cancel makes delivered differ from generated: a run that stopped by
        # itself is charged every token it generated, a matched stop string included.
        delivered_output_tokens=delivery.tokens if canceled and delivery.streamed else None,
        from_status=Status.PROCESSING,
    )


class Delivery:
    """Counts the output tokens that reached the event log before a cancel took effect
    (billed = delivered): once the runner has seen the cancel flag, what it still emits
    (a held-back stop-string tail) is logged for the client but not charged."""

    def __init__(self, cancel_requested: Callable[[], bool]):
        self._cancel_requested = cancel_requested
        self.canceled = False
        self.streamed = False
        self.tokens = 0
        # The flag as the last append found it, if none was asked since: one round trip
        # per token instead of two.
        self._flag_from_append: bool | None = None

    def should_cancel(self) -> bool:
        if not self.canceled:
            flag, self._flag_from_append = self._flag_from_append, None
            self.canceled = self._cancel_requested() if flag is None else flag
        return self.canceled

    def appended(self, cancel_flagged: bool) -> None:
        self._flag_from_append = cancel_flagged

    def delivered(self, tokens: int) -> None:
        self.streamed = True
        if not self.canceled:
            self.tokens += tokens

    def failed_counts(self) -> dict[str, int]:
        """A run that failed mid-stream is charged what it delivered before failing."""
        if not self.streamed:
            return {}
        return {"output_tokens": self.tokens, "delivered_output_tokens": self.tokens}


def _run(prediction: Prediction, delivery: Delivery) -> tuple[Result, str]:
    # The version's frozen spec: what the caller pinned (or was the newest at admission),
    # whatever the listing became since.
    run = prediction.version or prediction.model
    spec = run.runtime_spec
    runner = get_runner(spec.task)
    log_lines: list[str] = []
    result: Result | None = None
    data = prediction.input
    if image_fields(spec.task):
        data = files.input_images(prediction, spec.task)
    for event in runner.run(spec, data, delivery.should_cancel):
        if event.type == EventType.OUTPUT:
            delivery.appended(lifecycle.append_checking_cancel(prediction.id, "output", event.data))
            delivery.delivered(event.tokens)
            lifecycle.notify_output(prediction)
        elif event.type == EventType.LOG:
            log_lines.append(event.data)
            delivery.appended(lifecycle.append_checking_cancel(prediction.id, "log", event.data))
        else:
            result = event.data
    if result is None:
        raise RuntimeError("runner ended without a result")
    return result, "\n".join(log_lines)
