import logging

from celery import shared_task

from inference.webhooks import DELIVERY_RETRIES, WebhookRefused
from models_hub import deprecations

logger = logging.getLogger(__name__)


@shared_task(**DELIVERY_RETRIES, ignore_result=True)
def deliver_deprecation_notice(notice_id: int) -> None:
    """The `model.deprecated` event of one notice to the org's account webhook; retried with
    backoff (same webhook-id) while the receiver fails, dropped if the URL is refused."""
    try:
        deprecations.deliver(notice_id)
    except WebhookRefused as exc:
        # Where the URL points now is not allowed; a retry would ask the same question.
        logger.warning("deprecation notice %s webhook not sent: %s", notice_id, exc.message)
