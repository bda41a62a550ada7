from celery import shared_task

from billing import credit_purchases, services


@shared_task(ignore_result=True)
def report_overage() -> dict[str, int]:
    """Beat: sends overage to Stripe's Billing Meter; failures stay pending for the next run."""
    return services.report_overage()


@shared_task(ignore_result=True)
def start_top_up(org_id: int, claim: str) -> str:
    """Charges the auto top-up claimed by `credit_purchases.maybe_start_top_up`, once."""
    return credit_purchases.run_top_up(org_id, claim)
