from celery import shared_task

from billing import services


@shared_task(ignore_result=True)
def report_overage() -> dict[str, int]:
    """Beat: sends overage to Stripe's Billing Meter; failures stay pending for the next run."""
    return services.report_overage()
