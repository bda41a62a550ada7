"""A prediction's worker side: claim, lease, finish (settling usage and telling everyone),
the cancel flag as the worker reads it, and the webhooks the worker's events queue. The
web's side is `inference.admission`. Each one is a conditional update, so two actors (two
workers, a worker and a canceler, the reaper) can never both win the same transition."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import quota
from inference import events, run_statements, webhooks
from inference.models import Prediction, Status
from inference.payloads import prediction_payload
from inference.task_names import DELIVER_WEBHOOK
from models_hub import hot
from portal import metrics

logger = logging.getLogger(__name__)

# A prediction's own columns: its relations (org, model, version, token, user) are set
# at admission and never change.
MUTABLE_FIELDS = [field for field in Prediction._meta.concrete_fields if not field.is_relation]


def claim(prediction_id: str, worker_host: str) -> Prediction | None:
    """starting -> processing, for exactly one worker; None if someone else has it."""
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.PREDICTION_LEASE_SECONDS)
    prediction = run_statements.claim(prediction_id, now, lease_until, worker_host[:200])
    if prediction is None:
        return None
    # The listing and version from the process's catalog cache: they are the same for
    # every run of a model, and joining them to the claim cost more than the run's own rows.
    prediction.model, prediction.version = hot.run_target(
        prediction.model_id, prediction.version_id, hot.catalog_stamp()
    )
    events.append(prediction_id, "status", {"status": Status.PROCESSING})
    metrics.observe(
        "portal_prediction_queue_wait_seconds",
        {"model": prediction.model.slug},
        prediction.queue_time,
    )
    return prediction


def renew_leases(prediction_ids: list[str]) -> None:
    """Extends the leases of these predictions while they are still processing."""
    Prediction.objects.filter(pk__in=prediction_ids, status=Status.PROCESSING).update(
        lease_expires_at=timezone.now() + timedelta(seconds=settings.PREDICTION_LEASE_SECONDS)
    )


def fail_if_abandoned(prediction_id: str) -> bool:
    """A redelivered task whose first run died mid-way: the partial stream cannot be
    replayed honestly, so the prediction fails with a clear error instead of rerunning."""
    stale = Prediction.objects.filter(
        pk=prediction_id, status=Status.PROCESSING, lease_expires_at__lt=timezone.now()
    ).first()
    if stale is None:
        return False
    return finish(
        stale,
        Status.FAILED,
        error="The worker running this prediction stopped unexpectedly.",
        from_status=Status.PROCESSING,
    )


def finish(
    prediction: Prediction,
    status: str,
    *,
    output: object = None,
    error: str = "",
    logs: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    delivered_output_tokens: int | None = None,
    from_status: str | None = None,
) -> bool:
    """Moves a prediction to a terminal state once; settles usage and tells everyone."""
    now = timezone.now()
    started = prediction.started_at
    fields = {
        "status": status,
        "completed_at": now,
        "error": error,
        "predict_time": (now - started).total_seconds() if started else None,
        "lease_expires_at": None,
    }
    if output is not None:
        fields["output"] = output
    if logs is not None:
        fields["logs"] = logs
    if input_tokens is not None:
        fields["input_tokens"] = input_tokens
    if output_tokens is not None:
        fields["output_tokens"] = output_tokens
    if delivered_output_tokens is not None:
        fields["delivered_output_tokens"] = delivered_output_tokens
    allowed_from = [from_status] if from_status else [Status.STARTING, Status.PROCESSING]
    with transaction.atomic():
        # The row as the update left it: what others may have changed too (a cancel
        # request, output), not the relations, which never change and which the claim
        # loaded with the prediction.
        row = run_statements.finish(prediction.pk, fields, allowed_from, MUTABLE_FIELDS)
        if row is None:
            return False
        for field, value in zip(MUTABLE_FIELDS, row, strict=True):
            setattr(prediction, field.attname, value)
        quota.settle(prediction)
    _record_finish(prediction)
    final = prediction_payload(prediction)
    if error:
        events.append(prediction.id, "error", {"message": error})
    events.append(prediction.id, "done", final)
    queue_webhook(prediction, "completed")
    return True


def _record_finish(prediction: Prediction) -> None:
    model = {"model": prediction.model.slug}
    metrics.inc("portal_predictions_total", {**model, "status": prediction.status})
    if prediction.output_tokens:
        metrics.inc("portal_tokens_generated_total", model, prediction.output_tokens)
    if prediction.predict_time is not None:
        metrics.observe("portal_prediction_predict_seconds", model, prediction.predict_time)
    logger.info(
        "prediction %s",
        prediction.status,
        extra={"prediction_id": prediction.id, "org": prediction.org_id},
    )


# --- Cancel ------------------------------------------------------------------------


# Long enough to outlast any run: the worker checks the flag at every token.
CANCEL_KEY_TTL_SECONDS = 3600


def _cancel_key(prediction_id: str) -> str:
    return f"pred:{{{prediction_id}}}:cancel"


def request_cancel(prediction_id: str) -> None:
    """Flags a running prediction: its worker sees the flag with its next event."""
    events.sync_client().set(_cancel_key(prediction_id), 1, ex=CANCEL_KEY_TTL_SECONDS)


def cancel_requested(prediction_id: str) -> bool:
    return bool(events.sync_client().exists(_cancel_key(prediction_id)))


def append_checking_cancel(prediction_id: str, type_: str, data: object) -> bool:
    """A worker's event appended, and whether a cancel was requested, in one round trip."""
    return events.append_watching(prediction_id, type_, data, _cancel_key(prediction_id))


# --- Webhooks ----------------------------------------------------------------------


def queue_webhook(prediction: Prediction, event: str) -> None:
    if not prediction.webhook or event not in prediction.webhook_events_filter:
        return
    if not webhooks.should_send(prediction.id, event):
        return
    current_app.send_task(DELIVER_WEBHOOK, args=[prediction.id, event])


def notify_output(prediction: Prediction) -> None:
    queue_webhook(prediction, "output")
