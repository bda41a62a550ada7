"""Buying prepaid credits (issue #12): Checkout in payment mode, auto top-up off-session to
the saved card (at most one at a time), and what Stripe's webhooks tell us about both,
refunds included.

Every credit change goes through `credits.change_balance` with a unique reference
(`checkout:<session>`, `pi:<intent>`, `refund:<refund>`), in the transaction of the
webhook's event row: a replay changes nothing and events may come in any order. A refund
of credits already spent may leave the balance below zero; paid calls stop until a
purchase or a top-up brings it back.

This module must not import `billing.stripe_events` (which dispatches webhooks here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from billing import credits, stripe_client
from billing.models import BillingAccount, CreditEntry, Customer
from portal.errors import InvalidInput
from portal.models import Organization, Role
from portal.services import audit, require_role

logger = logging.getLogger(__name__)

# What one purchase or top-up may be, in whole currency units (2 decimal places).
MIN_PURCHASE = Decimal(5)
MAX_PURCHASE = Decimal(10000)
MAX_THRESHOLD = Decimal(10000)
CENT = Decimal("0.01")

KIND_CREDITS = "credits"
KIND_TOP_UP = "top_up"

# A claimed top-up whose PaymentIntent is not known yet.
PENDING = "pending"
# A top-up in flight for longer than this is presumed lost: another one may start.
TOP_UP_STALE_AFTER = timedelta(hours=1)
# Statuses of an off-session PaymentIntent that will still end in `succeeded` by itself.
STILL_GOING = ("succeeded", "processing", "requires_capture")
# Refunds that took, or may still take, the money back.
REFUND_COUNTS = ("succeeded", "pending", "requires_action")


class EventLike(Protocol):
    """What a webhook handler here needs of `billing.stripe_mirror.EventContext`."""

    id: str
    type: str
    created: int


def to_cents(amount: Decimal) -> int:
    return int((amount / CENT).to_integral_value())


def from_cents(cents: Any) -> Decimal:
    """Stripe's integer minor units as Decimal money; never through float."""
    return (Decimal(int(cents)) * CENT).quantize(CENT)


# --- Checkout (browser) ---------------------------------------------------------------


def start_credits_checkout(
    org: Organization,
    user: AbstractBaseUser,
    amount: Decimal,
    *,
    customer: Callable[[], str],
    success_url: str,
    cancel_url: str,
) -> str:
    """The URL of a Checkout Session that buys `amount` of credits for the org. `customer`
    gives the org's Stripe customer id (`billing.checkout.ensure_customer`, passed in by
    the view: this module does not import checkout)."""
    require_role(org, user, Role.OWNER)
    if not (MIN_PURCHASE <= amount <= MAX_PURCHASE) or amount != amount.quantize(CENT):
        raise InvalidInput(
            f"The amount must be between {MIN_PURCHASE} and {MAX_PURCHASE}, "
            "with at most 2 decimal places.",
            param="amount",
        )
    if not stripe_client.is_configured():
        raise stripe_client.BillingNotConfigured(
            "Buying credits is not configured on this portal. "
            "Ask an administrator to grant credits."
        )
    url = stripe_client.create_credits_checkout_session(
        stripe_client.CreditsCheckoutRequest(
            org_id=org.pk,
            customer_id=customer(),
            amount_cents=to_cents(amount),
            success_url=success_url,
            cancel_url=cancel_url,
        )
    )
    audit(org, user, "billing.credits_checkout_started", str(amount))
    return url


@transaction.atomic
def set_auto_top_up(
    org: Organization,
    user: AbstractBaseUser,
    amount: Decimal | None,
    threshold: Decimal | None,
) -> BillingAccount:
    """Turns auto top-up on (both values) or off (both None)."""
    require_role(org, user, Role.OWNER)
    if (amount is None) != (threshold is None):
        raise InvalidInput("Give both the top-up amount and the threshold, or turn it off.")
    if amount is not None:
        if not stripe_client.is_configured():
            raise stripe_client.BillingNotConfigured(
                "Buying credits is not configured on this portal: auto top-up is unavailable."
            )
        if not (MIN_PURCHASE <= amount <= MAX_PURCHASE):
            raise InvalidInput("The top-up amount is out of range.", param="amount")
        if not (Decimal(0) <= threshold <= MAX_THRESHOLD):
            raise InvalidInput("The threshold is out of range.", param="threshold")
    account = credits.account_for(org)
    BillingAccount.objects.filter(pk=account.pk).update(
        auto_top_up_amount=amount, auto_top_up_threshold=threshold
    )
    if amount is None:
        audit(org, user, "billing.auto_top_up_off")
    else:
        audit(org, user, "billing.auto_top_up_on", str(amount), threshold=str(threshold))
    account.refresh_from_db()
    return account


def recent_entries(org: Organization, limit: int = 20) -> list[CreditEntry]:
    return list(CreditEntry.objects.filter(org=org).order_by("-created_at", "-pk")[:limit])


# --- Auto top-up ------------------------------------------------------------------------


def _claimable(now: datetime):
    """Accounts due a top-up: configured, below the threshold, a saved card and a
    customer, and no top-up in flight (or only one presumed lost)."""
    has_customer = Customer.objects.filter(
        org_id=OuterRef("org_id"), stripe_customer_id__isnull=False
    ).exclude(stripe_customer_id="")
    return (
        BillingAccount.objects.filter(
            auto_top_up_amount__isnull=False,
            auto_top_up_threshold__isnull=False,
            balance__lt=F("credits_reserved") + F("auto_top_up_threshold"),
        )
        .filter(~Q(top_up_payment_method="") | ~Q(top_up_source_intent=""))
        .filter(Q(top_up_in_flight="") | Q(top_up_started_at__lt=now - TOP_UP_STALE_AFTER))
        .filter(Exists(has_customer))
    )


def maybe_start_top_up(org_id: int) -> bool:
    """Starts an auto top-up when one is due; True if this call started it.

    The claim is ONE conditional UPDATE (`top_up_in_flight` '' -> 'pending'): of any
    number of concurrent callers exactly one gets the row. The charge itself is a Celery
    task queued on commit, so Stripe is never called inside a transaction."""
    if not stripe_client.is_configured():
        return False
    now = timezone.now()
    with transaction.atomic():
        claimed = (
            _claimable(now)
            .filter(org_id=org_id)
            .update(top_up_in_flight=PENDING, top_up_started_at=now)
        )
        if not claimed:
            return False
        claim = now.isoformat()

        def send() -> None:
            # Imported here: billing.tasks imports this module.
            from billing import tasks

            tasks.start_top_up.delay(org_id, claim)

        transaction.on_commit(send)
    return True


def idempotency_key(org_id: int, claimed_at: datetime) -> str:
    return f"topup-{org_id}-{int(claimed_at.timestamp() * 1_000_000)}"


def _release(org_id: int, claimed_at: datetime, reason: str) -> None:
    released = BillingAccount.objects.filter(
        org_id=org_id, top_up_in_flight=PENDING, top_up_started_at=claimed_at
    ).update(top_up_in_flight="")
    if released:
        org = Organization.objects.get(pk=org_id)
        audit(org, None, "billing.top_up_failed", reason[:200])


def _payment_method(account: BillingAccount) -> str:
    """The saved card; read from the purchase's PaymentIntent (and kept) if only that is
    known. Called outside any transaction."""
    if account.top_up_payment_method or not account.top_up_source_intent:
        return account.top_up_payment_method
    method = stripe_client.payment_method_of_intent(account.top_up_source_intent)
    if method:
        BillingAccount.objects.filter(
            pk=account.pk,
            top_up_source_intent=account.top_up_source_intent,
            top_up_payment_method="",
        ).update(top_up_payment_method=method)
    return method


def run_top_up(org_id: int, claim: str) -> str:
    """The Celery task's body: charges the top-up claimed at `claim`, once. A redelivered
    task finds the claim gone (or holding the intent) and does nothing."""
    claimed_at = datetime.fromisoformat(claim)
    account = BillingAccount.objects.filter(
        org_id=org_id, top_up_in_flight=PENDING, top_up_started_at=claimed_at
    ).first()
    if account is None or account.auto_top_up_amount is None:
        if account is not None:
            _release(org_id, claimed_at, "auto top-up was turned off")
        return "skipped"
    customer = Customer.objects.filter(org_id=org_id).values_list("stripe_customer_id", flat=True)
    customer_id = customer.first()
    try:
        method = _payment_method(account)
        if not customer_id or not method:
            _release(org_id, claimed_at, "no saved card")
            return "no payment method"
        intent = stripe_client.create_top_up_payment_intent(
            customer_id,
            method,
            to_cents(account.auto_top_up_amount),
            org_id,
            idempotency_key(org_id, account.top_up_started_at),
        )
    except (stripe_client.StripeUnavailable, stripe_client.BillingNotConfigured) as exc:
        logger.warning("Auto top-up of org %s failed: %s", org_id, exc.__cause__ or exc)
        _release(org_id, claimed_at, f"payment failed: {exc.message}")
        return "failed"
    return _record_intent(org_id, claimed_at, intent)


@transaction.atomic
def _record_intent(org_id: int, claimed_at: datetime, intent: stripe_client.TopUpIntent) -> str:
    # The row lock orders this with the intent's webhooks (which lock it too): either they
    # find the intent id here and clear it, or it already credited and we clear it.
    account = (
        BillingAccount.objects.select_for_update()
        .filter(org_id=org_id, top_up_in_flight=PENDING, top_up_started_at=claimed_at)
        .first()
    )
    if account is None:
        return "superseded"
    settled = CreditEntry.objects.filter(reference=f"pi:{intent.id}").exists()
    if intent.status in STILL_GOING and not settled:
        account.top_up_in_flight = intent.id
        account.save(update_fields=["top_up_in_flight", "updated_at"])
        return "started"
    account.top_up_in_flight = ""
    account.save(update_fields=["top_up_in_flight", "updated_at"])
    if not settled:
        audit(account.org, None, "billing.top_up_failed", intent.id, status=intent.status)
        return "failed"
    return "settled"


# --- Webhooks (called by billing.stripe_events.process_event, in its transaction) -----


def _org_for(metadata: dict | None, customer_id: Any = None) -> Organization | None:
    org_id = str((metadata or {}).get("org") or "")
    if org_id.isdigit():
        org = Organization.objects.filter(pk=int(org_id)).first()
        if org is not None:
            return org
    if isinstance(customer_id, str) and customer_id:
        found = Customer.objects.select_related("org").filter(stripe_customer_id=customer_id)
        row = found.first()
        return row.org if row else None
    return None


def _id_of(value: Any) -> str:
    """An expandable field: the id string, or the id of the expanded object."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return value if isinstance(value, str) else ""


def _locked_account(org: Organization) -> BillingAccount:
    account = credits.account_for(org)
    return BillingAccount.objects.select_for_update().get(pk=account.pk)


def _remember_card(
    org: Organization, intent_id: str, method_id: str, created: int, customer_id: str
) -> None:
    """Keeps the card of the newest credits purchase for auto top-ups."""
    if customer_id:
        customer, _ = Customer.objects.get_or_create(org=org)
        if not customer.stripe_customer_id:
            customer.stripe_customer_id = customer_id
            customer.save(update_fields=["stripe_customer_id"])
    if not (intent_id or method_id):
        return
    account = _locked_account(org)
    if created < account.top_up_method_event_at:
        return
    if intent_id and intent_id != account.top_up_source_intent:
        account.top_up_source_intent = intent_id
        account.top_up_payment_method = ""
    if method_id:
        account.top_up_payment_method = method_id
    account.top_up_method_event_at = created
    account.save(
        update_fields=[
            "top_up_source_intent",
            "top_up_payment_method",
            "top_up_method_event_at",
            "updated_at",
        ]
    )


def on_checkout_completed(obj: dict[str, Any], ctx: EventLike) -> str:
    """`checkout.session.completed` (and `.async_payment_succeeded`) in payment mode."""
    metadata = obj.get("metadata") or {}
    if obj.get("mode") != "payment" or metadata.get("kind") != KIND_CREDITS:
        return "ignored: not a credits checkout"
    if obj.get("payment_status") != "paid":
        return "ignored: not paid yet"
    org = _org_for({"org": obj.get("client_reference_id") or metadata.get("org")})
    if org is None:
        return "ignored: no matching organization"
    if (obj.get("currency") or "").lower() != settings.PORTAL_CURRENCY:
        logger.error("Credits checkout %s paid in %s", obj.get("id"), obj.get("currency"))
        return "ignored: not in the portal's currency"
    amount = from_cents(obj.get("amount_total") or 0)
    if amount <= 0:
        return "ignored: nothing was paid"
    intent = obj.get("payment_intent")
    method = intent.get("payment_method") if isinstance(intent, dict) else None
    _remember_card(org, _id_of(intent), _id_of(method), ctx.created, _id_of(obj.get("customer")))
    entry = credits.change_balance(
        org,
        amount,
        CreditEntry.Kind.PURCHASE,
        reference=f"checkout:{obj['id']}",
        note="Credits bought with Stripe Checkout",
    )
    if entry is None:
        return "duplicate: already credited"
    audit(org, None, "billing.credits_purchased", obj["id"], amount=str(amount))
    return f"applied: +{amount} credits"


def on_payment_intent_succeeded(obj: dict[str, Any], ctx: EventLike) -> str:
    metadata = obj.get("metadata") or {}
    kind = metadata.get("kind")
    if kind not in (KIND_CREDITS, KIND_TOP_UP):
        return "ignored: not a credits payment"
    org = _org_for(metadata, obj.get("customer"))
    if org is None:
        return "ignored: no matching organization"
    if kind == KIND_CREDITS:
        # The credits come with the Checkout Session; this event names the saved card.
        _remember_card(org, obj["id"], _id_of(obj.get("payment_method")), ctx.created, "")
        return "applied: card saved"
    if (obj.get("currency") or "").lower() != settings.PORTAL_CURRENCY:
        logger.error("Top-up %s paid in %s", obj.get("id"), obj.get("currency"))
        return "ignored: not in the portal's currency"
    account = _locked_account(org)
    amount = from_cents(obj.get("amount_received") or obj.get("amount") or 0)
    entry = credits.change_balance(
        org, amount, CreditEntry.Kind.TOP_UP, reference=f"pi:{obj['id']}", note="Auto top-up"
    )
    if account.top_up_in_flight == obj["id"]:
        BillingAccount.objects.filter(pk=account.pk).update(top_up_in_flight="")
    if entry is None:
        return "duplicate: already credited"
    audit(org, None, "billing.top_up_succeeded", obj["id"], amount=str(amount))
    return f"applied: +{amount} credits"


def on_payment_intent_failed(obj: dict[str, Any], ctx: EventLike) -> str:
    metadata = obj.get("metadata") or {}
    if metadata.get("kind") != KIND_TOP_UP:
        return "ignored: not a top-up"
    org = _org_for(metadata, obj.get("customer"))
    if org is None:
        return "ignored: no matching organization"
    account = _locked_account(org)
    if account.top_up_in_flight == obj["id"]:
        BillingAccount.objects.filter(pk=account.pk).update(top_up_in_flight="")
    error = (obj.get("last_payment_error") or {}).get("message") or ""
    audit(org, None, "billing.top_up_failed", obj["id"], error=str(error)[:200])
    return "applied: top-up failed, no credits"


def is_credits_charge(obj: dict[str, Any]) -> bool:
    return (obj.get("metadata") or {}).get("kind") in (KIND_CREDITS, KIND_TOP_UP)


def on_charge_refunded(obj: dict[str, Any], ctx: EventLike) -> str:
    """One REFUND entry per refund of a credits or top-up charge, by the refund's id: the
    charge's `amount_refunded` is cumulative, the refunds are not, so a partial refund and
    the later full one count each refund once, whatever their order."""
    if not is_credits_charge(obj):
        return "ignored: not a credits charge"
    org = _org_for(obj.get("metadata"), obj.get("customer"))
    if org is None:
        return "ignored: no matching organization"
    refunds = (obj.get("refunds") or {}).get("data")
    if not isinstance(refunds, list):
        return _refund_cumulative(org, obj)
    taken = Decimal(0)
    for refund in refunds:
        if refund.get("status", "succeeded") not in REFUND_COUNTS:
            continue
        amount = from_cents(refund.get("amount") or 0)
        entry = credits.change_balance(
            org,
            -amount,
            CreditEntry.Kind.REFUND,
            reference=f"refund:{refund['id']}",
            note=f"Refund of {obj.get('id')}",
        )
        if entry is not None:
            taken += amount
            audit(org, None, "billing.credits_refunded", refund["id"], amount=str(amount))
    return f"applied: -{taken} credits" if taken else "duplicate: refunds already applied"


def _refund_cumulative(org: Organization, charge: dict[str, Any]) -> str:
    """For API versions whose charges no longer list their refunds: the part of the
    cumulative `amount_refunded` not taken yet, as one entry named after that total (under
    the account's lock, so concurrent deliveries take it once; an older, smaller total
    takes nothing)."""
    _locked_account(org)
    prefix = f"refund:{charge['id']}:"
    entries = CreditEntry.objects.filter(org=org, reference__startswith=prefix)
    applied = -sum((entry.amount for entry in entries), Decimal(0))
    total = from_cents(charge.get("amount_refunded") or 0)
    delta = total - applied
    if delta <= 0:
        return "duplicate: refunds already applied"
    credits.change_balance(
        org,
        -delta,
        CreditEntry.Kind.REFUND,
        reference=f"{prefix}{to_cents(total)}",
        note=f"Refund of {charge['id']}",
    )
    audit(org, None, "billing.credits_refunded", charge["id"], amount=str(delta))
    return f"applied: -{delta} credits"
