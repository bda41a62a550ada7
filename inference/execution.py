"""Runs one claimed prediction in a worker: runner events -> event log -> terminal state."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, connection

from inference import files, lifecycle
from inference.images import image_fields
from inference.models import Prediction, Status
from inference.runners import get_runner
from inference.runners.base import EventType, FinishReason, Result
from portal.errors import InvalidInput
from portal.logs import prediction_context

logger = logging.getLogger(__name__)
MODEL_FAILURE = "The model failed while running this input."


class LeaseKeeper:
    """Renews the leases of every prediction this process is running, model loading
    included, in one UPDATE every third of a lease, from one thread per process (started
    with the first run; a forked pool child starts its own). A worker that dies stops
    renewing and the reaper takes over. One thread per run cost a thread start and join,
    each a wait for the other thread, on every prediction."""

    def __init__(self) -> None:
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._owner_pid: int | None = None

    @contextmanager
    def held(self, prediction_id: str) -> Iterator[None]:
        with self._lock:
            self._running.add(prediction_id)
            if self._owner_pid != os.getpid():
                self._owner_pid = os.getpid()
                threading.Thread(target=self._beat, name="lease-keeper", daemon=True).start()
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(prediction_id)

    def _beat(self) -> None:
        while True:
            time.sleep(settings.PREDICTION_LEASE_SECONDS / 3)
            with self._lock:
                running = list(self._running)
            if not running:
                continue
            try:
                lifecycle.renew_leases(running)
            except DatabaseError:
                # The next beat tries again, well within the lease.
                logger.warning("Could not renew the leases of %d predictions", len(running))
            finally:
                connection.close()  # back to the pool between beats


leases = LeaseKeeper()


def execute(prediction_id: str, worker_host: str) -> None:
    # Claimed first: the claimed row names the org for the logs, with no lookup of its own.
    prediction = lifecycle.claim(prediction_id, worker_host)
    if prediction is None:
        with prediction_context(prediction_id, None):
            # Already terminal (nothing to do), or redelivered after its worker died.
            lifecycle.fail_if_abandoned(prediction_id)
        return
    with prediction_context(prediction.id, prediction.org_id):
        _execute(prediction)


def _execute(prediction: Prediction) -> None:
    delivery = Delivery(partial(lifecycle.cancel_requested, prediction.id))
    try:
        with leases.held(prediction.id):
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
        logger.exception("prediction %s failed", prediction.id)
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


class OutputBuffer:
    """Output on its way to the event log. Whatever arrives within
    settings.OUTPUT_COALESCE_MS of the last append goes out with the next one: a runner
    that streams faster than a Redis round trip (a fast model, a batch step that emits
    several tokens) makes one `output` event per window instead of one per token, while
    a token that comes after a pause (the first one always) goes out at once. Billing
    counts what was appended (`Delivery.delivered`), as before."""

    def __init__(
        self,
        prediction: Prediction,
        delivery: Delivery,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.prediction = prediction
        self.delivery = delivery
        self.window = settings.OUTPUT_COALESCE_MS / 1000
        self.clock = clock
        self.held: list[str] = []
        self.held_tokens = 0
        self.appended_at = float("-inf")

    def due(self) -> bool:
        return self.clock() - self.appended_at >= self.window

    def add(self, text: str, tokens: int) -> None:
        self.held.append(text)
        self.held_tokens += tokens
        if self.due():
            self.flush()

    def flush(self) -> None:
        if not self.held:
            return
        text, tokens = "".join(self.held), self.held_tokens
        self.held, self.held_tokens = [], 0
        self.appended_at = self.clock()
        self.delivery.appended(lifecycle.append_checking_cancel(self.prediction.id, "output", text))
        self.delivery.delivered(tokens)
        lifecycle.notify_output(self.prediction)

    def log(self, line: str) -> None:
        self.flush()  # the log keeps the order the runner emitted
        self.delivery.appended(lifecycle.append_checking_cancel(self.prediction.id, "log", line))

    def should_cancel(self) -> bool:
        """The runner's cancel check, between tokens. While output is held and its
        window is open the flag waits for the append that will bring it (a cancel is
        seen at most one window later); otherwise held output goes out first, so what
        the runner generated before it learns of the cancel is delivered, as unbuffered."""
        if self.delivery.canceled:
            return True
        if self.held and not self.due():
            return False
        self.flush()
        return self.delivery.should_cancel()


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
    output = OutputBuffer(prediction, delivery)
    try:
        for event in runner.run(spec, data, output.should_cancel):
            if event.type == EventType.OUTPUT:
                output.add(event.data, event.tokens)
            elif event.type == EventType.LOG:
                log_lines.append(event.data)
                output.log(event.data)
            else:
                result = event.data
    finally:
        # Also when the runner failed: what it generated reaches the client (and is
        # charged as delivered), as it did one token at a time.
        output.flush()
    if result is None:
        raise RuntimeError("runner ended without a result")
    return result, "\n".join(log_lines)
