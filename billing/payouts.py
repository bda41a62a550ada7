"""Monthly payouts to publishers: one Connect transfer per publisher and calendar month
(UTC), of its royalty balance once the month's entries are past the hold.

A publisher's balance is every share it earned before the month's end less everything
already paid out (or being paid), so a negative balance (refunds after a payout) carries
forward, and so does anything below PAYOUT_MINIMUM. Creating a payout is serialized per
publisher by its account row's lock and backed by a unique key per publisher and month;
the transfer carries an idempotency key, so a run started twice at once, or retried after
a crash, pays each publisher once.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from billing import stripe_client
from billing.models import Payout, PublisherAccount, RoyaltyEntry

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
ZERO = Decimal(0)


def month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def due_month(now: datetime) -> tuple[date, datetime] | None:
    """The month to pay out now (its first day, and the instant it ended), or None while
    its last entries are still inside the hold."""
    cutoff = month_start(now.astimezone(UTC))
    if now < cutoff + timedelta(days=settings.PAYOUT_HOLD_DAYS):
        return None
    return (cutoff - relativedelta(months=1)).date(), cutoff


def balance(publisher_id: int, cutoff: datetime) -> Decimal:
    """Shares earned before `cutoff`, less every payout made or under way."""
    earned = RoyaltyEntry.objects.filter(publisher_id=publisher_id, created_at__lt=cutoff)
    earned_total = earned.aggregate(total=Sum("publisher_share"))["total"] or ZERO
    paid = Payout.objects.filter(publisher_id=publisher_id).aggregate(total=Sum("amount"))
    return earned_total - (paid["total"] or ZERO)


@transaction.atomic
def _create_payout(account: PublisherAccount, period: date, cutoff: datetime) -> Payout | None:
    PublisherAccount.objects.select_for_update().filter(pk=account.pk).first()
    if Payout.objects.filter(publisher_id=account.org_id, period_start=period).exists():
        return None  # this month is paid, or being paid, already
    # Whole cents only, rounded down: the fraction stays in the balance for next month.
    amount = balance(account.org_id, cutoff).quantize(CENT, rounding=ROUND_DOWN)
    if amount < settings.PAYOUT_MINIMUM:
        return None
    return Payout.objects.create(
        publisher_id=account.org_id, period_start=period, cutoff=cutoff, amount=amount
    )


# A payout still pending this long after it was created or last tried lost its process
# before or during the transfer: it is tried again (the idempotency key makes that safe).
STALE_ATTEMPT = timedelta(minutes=10)


def _claim(payout: Payout) -> bool:
    """One run at a time transfers a payout: the attempt counter moves only from the value
    this run read, and never once the payout is paid."""
    claimed = Payout.objects.filter(
        pk=payout.pk,
        attempts=payout.attempts,
        status__in=[Payout.Status.PENDING, Payout.Status.FAILED],
    ).update(attempts=F("attempts") + 1, updated_at=timezone.now())
    return claimed == 1


def transfer(payout: Payout) -> Payout:
    """Sends the payout's transfer; a failure is kept on the payout for the next run."""
    if not _claim(payout):
        return payout
    account = PublisherAccount.objects.get(org_id=payout.publisher_id)
    try:
        transfer_id = stripe_client.create_transfer(
            account.stripe_account_id,
            int(payout.amount * 100),
            payout.currency,
            payout.idempotency_key,
            {"publisher": str(payout.publisher_id), "period": f"{payout.period_start:%Y-%m}"},
        )
    except stripe_client.StripeUnavailable as exc:
        logger.warning("Payout %s failed: %s", payout.pk, exc.__cause__ or exc)
        Payout.objects.filter(pk=payout.pk).update(
            status=Payout.Status.FAILED,
            error=str(exc.__cause__ or exc)[:2000],
            updated_at=timezone.now(),
        )
    else:
        Payout.objects.filter(pk=payout.pk).update(
            status=Payout.Status.PAID,
            stripe_transfer_id=transfer_id,
            error="",
            updated_at=timezone.now(),
        )
    return Payout.objects.get(pk=payout.pk)


def pay_publishers(now: datetime | None = None) -> list[Payout]:
    """The beat task's work: last month's payouts once the hold is over, then a retry of
    every failed (or stalled) transfer of earlier runs. Returns the payouts it sent (or
    tried to)."""
    now = now or timezone.now()
    sent = []
    due = due_month(now)
    if due is not None:
        for account in PublisherAccount.objects.filter(payouts_enabled=True):
            payout = _create_payout(account, *due)
            if payout is not None:
                sent.append(transfer(payout))
    retry = _to_retry(now).exclude(pk__in=[payout.pk for payout in sent])
    return sent + [transfer(payout) for payout in retry]


def _to_retry(now: datetime) -> QuerySet[Payout]:
    failed = Q(status=Payout.Status.FAILED)
    stalled = Q(status=Payout.Status.PENDING, updated_at__lt=now - STALE_ATTEMPT)
    return Payout.objects.filter(failed | stalled)
