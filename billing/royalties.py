"""The royalty ledger: for every charge on a publisher's listing, the customer's charge,
the publisher's share and the platform's fee, append-only (`RoyaltyEntry`).

A settled call adds a usage entry in settlement's transaction; a correction of it adds a
reversing entry. Each entry's reference is unique, so a retried settlement or a replayed
event never records twice. The fee is the publisher's own (`PublisherAccount.fee_percent`,
set by operators) or PLATFORM_FEE_PERCENT, rounded half up to 6 places; the share is the
rest, so the parts always add up to the charge.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import IntegrityError, transaction

from billing.models import (
    MONEY_PLACES,
    CallCost,
    PublisherAccount,
    RoyaltyEntry,
    SubscriptionInvoice,
    UsageCorrection,
)
from models_hub.models import ModelListing

STEP = Decimal(1).scaleb(-MONEY_PLACES)
HUNDRED = Decimal(100)


def is_third_party(listing: ModelListing) -> bool:
    """A publisher's listing (the operator's own have no org)."""
    return listing.org_id is not None


def fee_percent(publisher_id: int) -> Decimal:
    own = PublisherAccount.objects.filter(org_id=publisher_id).values_list("fee_percent", flat=True)
    percent = own.first()
    return settings.PLATFORM_FEE_PERCENT if percent is None else percent


def split(charge: Decimal, percent: Decimal) -> tuple[Decimal, Decimal]:
    """(publisher share, platform fee) of `charge`; negative charges split the same way."""
    fee = (charge * percent / HUNDRED).quantize(STEP, rounding=ROUND_HALF_UP)
    return charge - fee, fee


def _record(
    listing: ModelListing,
    customer_id: int,
    kind: str,
    reference: str,
    charge: Decimal,
    currency: str,
    percent: Decimal,
) -> RoyaltyEntry | None:
    share, fee = split(charge, percent)
    try:
        # A savepoint: a replay's unique violation must not undo the caller's work.
        with transaction.atomic():
            return RoyaltyEntry.objects.create(
                publisher_id=listing.org_id,
                listing=listing,
                customer_id=customer_id,
                kind=kind,
                reference=reference,
                currency=currency,
                customer_charge=charge,
                publisher_share=share,
                platform_fee=fee,
                fee_percent=percent,
            )
    except IntegrityError:
        if RoyaltyEntry.objects.filter(reference=reference).exists():
            return None
        raise


def record_call(receipt: CallCost, listing: ModelListing) -> RoyaltyEntry | None:
    """The usage entry of a settled call on a publisher's listing: what the customer paid
    for it (credits and overage; site plans never cover such listings, and what a listing
    subscription's included usage paid is in its invoice's entry)."""
    charge = receipt.paid_by_credits + receipt.paid_as_overage
    if not is_third_party(listing) or charge <= 0:
        return None
    return _record(
        listing,
        receipt.org_id,
        RoyaltyEntry.Kind.USAGE,
        _usage_reference(receipt),
        charge,
        receipt.currency,
        fee_percent(listing.org_id),
    )


def _usage_reference(receipt: CallCost) -> str:
    return f"usage:{receipt.prediction_id}"


def reverse_correction(correction: UsageCorrection, receipt: CallCost) -> RoyaltyEntry | None:
    """A correction that gave credits back takes the same amount back from the royalty
    ledger, split at the call's own fee (the publisher's fee may have changed since)."""
    listing = receipt.model
    given_back = -(correction.credits_amount + correction.overage_amount)
    original = RoyaltyEntry.objects.filter(reference=_usage_reference(receipt)).first()
    if original is None or given_back <= 0:
        return None
    return _record(
        listing,
        receipt.org_id,
        RoyaltyEntry.Kind.REFUND,
        f"correction:{correction.pk}",
        -given_back,
        receipt.currency,
        original.fee_percent,
    )


def _invoice_reference(invoice: SubscriptionInvoice) -> str:
    return f"invoice:{invoice.stripe_invoice_id}"


def record_subscription_invoice(
    invoice: SubscriptionInvoice, listing: ModelListing, customer_id: int
) -> RoyaltyEntry | None:
    """The subscription entry of a paid invoice of a listing plan."""
    return _record(
        listing,
        customer_id,
        RoyaltyEntry.Kind.SUBSCRIPTION,
        _invoice_reference(invoice),
        invoice.amount,
        invoice.currency,
        fee_percent(listing.org_id),
    )


def reverse_subscription_invoice(
    invoice: SubscriptionInvoice, kind: str, reference: str, taken_back: Decimal
) -> RoyaltyEntry | None:
    """An entry taking `taken_back` of a subscription invoice's charge back from the
    publisher (negative: gives it back, as a won dispute does), split at the invoice's
    own fee; None if `reference` was recorded already."""
    original = RoyaltyEntry.objects.filter(reference=_invoice_reference(invoice)).first()
    if original is None:
        return None
    return _record(
        original.listing,
        original.customer_id,
        kind,
        reference,
        -taken_back,
        invoice.currency,
        original.fee_percent,
    )


def taken_back(reference_prefix: str) -> Decimal:
    """What the entries whose reference starts with the prefix took back so far."""
    entries = RoyaltyEntry.objects.filter(reference__startswith=reference_prefix)
    return -sum((entry.customer_charge for entry in entries), Decimal(0))
