"""Celery tasks: thin wrappers around services (see ARCHITECTURE.md, "The spine"). The
spine's are sent by name (`inference.task_names`): their senders never import this module."""

from __future__ import annotations

import logging

from celery import shared_task

from inference import catalog_stats, execution, files, reaper, retention, task_names, webhooks
from inference.models import Prediction
from portal.logs import prediction_context

logger = logging.getLogger(__name__)


@shared_task(
    name=task_names.RUN_PREDICTION, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def run_prediction(prediction_id: str) -> None:
    execution.execute(prediction_id, run_prediction.request.hostname or "")


@shared_task(name=task_names.DELIVER_WEBHOOK, **webhooks.DELIVERY_RETRIES, ignore_result=True)
def deliver_webhook(prediction_id: str, event: str) -> None:
    prediction = Prediction.objects.select_related("org", "model").get(pk=prediction_id)
    with prediction_context(prediction.id, prediction.org_id):
        try:
            webhooks.deliver(prediction, event, deliver_webhook.request.id)
        except webhooks.WebhookRefused as exc:
            # Where the URL points now is not allowed; a retry would ask the same question.
            logger.warning("webhook not sent: %s", exc.message)


@shared_task(ignore_result=True)
def reap_stuck_predictions() -> int:
    return reaper.reap()


@shared_task(ignore_result=True)
def erase_expired_prediction_data() -> None:
    retention.erase_expired_predictions()
    files.expire_files()


@shared_task(ignore_result=True)
def refresh_catalog_stats() -> None:
    catalog_stats.refresh()
