import logging

from celery import shared_task

from billing import alerts, credit_purchases, overage_reports, payouts, price_notices
from inference.webhooks import DELIVERY_RETRIES, WebhookRefused

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def report_overage() -> dict[str, int]:
    """Beat: sends overage to Stripe's Billing Meter; failures stay pending for the next run."""
    return overage_reports.report_overage()


@shared_task(ignore_result=True)
def start_top_up(org_id: int, claim: str) -> str:
    """Charges the auto top-up claimed by `credit_purchases.maybe_start_top_up`, once."""
    return credit_purchases.run_top_up(org_id, claim)


@shared_task(**DELIVERY_RETRIES, ignore_result=True)
def deliver_billing_alert(alert_id: int) -> None:
    """The `billing.threshold` event of one alert to the org's account webhook; retried with
    backoff (same webhook-id) while the receiver fails, dropped if the URL is refused."""
    try:
        alerts.deliver(alert_id)
    except WebhookRefused as exc:
        # Where the URL points now is not allowed; a retry would ask the same question.
        logger.warning("billing alert %s webhook not sent: %s", alert_id, exc.message)


@shared_task(ignore_result=True)
def pay_publishers() -> int:
    """Beat: last month's Connect transfers once the hold is over; retries failed ones."""
    return len(payouts.pay_publishers())


@shared_task(ignore_result=True)
def announce_price_change(price_id: int) -> int:
    """E-mails the customers a scheduled price change affects, each org once."""
    return price_notices.announce(price_id)
