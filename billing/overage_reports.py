"""Overage reported to Stripe's Billing Meter (beat, `billing.tasks.report_overage`):
unreported overage gathered into one report per org and period, then each pending report
sent once, Stripe deduplicating its identifier should an acknowledgement be lost.

Reports and receipts change only under a row lock, never read-then-write.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from billing import stripe_client
from billing.models import CallCost, Customer, MeteredCost, MeterReport, UsagePeriod

METER_BATCH = 500


def _cents(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _report_period(org_id: int, period_id: int, receipts: list[CallCost]) -> MeterReport:
    """One report for the receipts of one period. Its cents are the period's overage so
    far, rounded half up once, minus the cents already reported: what Stripe invoices
    for the period is its exact overage rounded to the cent, never a sum of roundings."""
    UsagePeriod.objects.select_for_update().filter(pk=period_id).first()
    before = MeterReport.objects.filter(period_id=period_id).aggregate(
        amount=Sum("amount"), cents=Sum("cents")
    )
    amount = sum((receipt.paid_as_overage for receipt in receipts), Decimal(0))
    cents = _cents((before["amount"] or Decimal(0)) + amount) - (before["cents"] or 0)
    report = MeterReport.objects.create(
        org_id=org_id,
        period_id=period_id,
        identifier=f"portal-overage-{org_id}-{receipts[0].pk}-{receipts[-1].pk}",
        amount=amount,
        cents=cents,
        rounding=Decimal(cents) / 100 - amount,
    )
    MeteredCost.objects.bulk_create(
        [MeteredCost(call_cost=receipt, report=report) for receipt in receipts]
    )
    return report


@transaction.atomic
def batch_overage() -> list[MeterReport]:
    """Gathers unreported overage into one report per org and period; each receipt joins
    exactly one report (`MeteredCost` is unique per receipt)."""
    receipts = list(
        CallCost.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(paid_as_overage__gt=0, metered__isnull=True)
        .annotate(period_id=F("prediction__usage_record__period_id"))
        .order_by("pk")[:METER_BATCH]
    )
    groups: dict[tuple[int, int], list[CallCost]] = {}
    for receipt in receipts:
        groups.setdefault((receipt.org_id, receipt.period_id), []).append(receipt)
    return [_report_period(org, period, items) for (org, period), items in groups.items()]


def send_report(report_id: int) -> str:
    """Sends one pending report; the row lock keeps two beat runs from sending it at once,
    and Stripe deduplicates the identifier should an acknowledgement be lost."""
    with transaction.atomic():
        report = (
            MeterReport.objects.select_for_update(skip_locked=True)
            .filter(pk=report_id, state=MeterReport.State.PENDING)
            .first()
        )
        if report is None:
            return "skipped"
        if not report.cents:
            # Under half a cent so far this period: rounded, there is nothing to bill.
            report.state, report.sent_at = MeterReport.State.SENT, timezone.now()
            report.save(update_fields=["state", "sent_at"])
            return report.state
        customer = Customer.objects.filter(
            org_id=report.org_id, stripe_customer_id__isnull=False
        ).first()
        if customer is None:
            report.state = MeterReport.State.UNBILLABLE
            report.last_error = "The organization has no Stripe customer."
            report.save(update_fields=["state", "last_error"])
            return report.state
        report.attempts += 1
        try:
            stripe_client.report_meter_event(
                customer.stripe_customer_id,
                report.cents,
                report.identifier,
                int(report.created_at.timestamp()),
            )
        except stripe_client.StripeUnavailable as exc:
            report.last_error = str(exc.__cause__ or exc)[:2000]
            report.save(update_fields=["attempts", "last_error"])
            return "retry"
        report.state, report.sent_at, report.last_error = (
            MeterReport.State.SENT,
            timezone.now(),
            "",
        )
        report.save(update_fields=["state", "sent_at", "attempts", "last_error"])
        return report.state


def report_overage() -> dict[str, int]:
    """Batches new overage, then sends every pending report (new and earlier failures)."""
    batch_overage()
    outcomes: dict[str, int] = {}
    if not stripe_client.is_configured():
        return outcomes
    pending = MeterReport.objects.filter(state=MeterReport.State.PENDING).order_by("created_at")
    for report_id in pending.values_list("pk", flat=True)[:METER_BATCH]:
        outcome = send_report(report_id)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
