"""Subscriptions to a publisher's listing (issue #13): the plans a publisher offers, the
Stripe mirror of who holds one, the usage each includes per period, and the price lock.

An org holds any number of these beside its site plan, one per listing. A call to a
listing the org subscribes to is paid from the subscription's included usage first (its
own counters, `SubscriptionUsage`, held by conditional UPDATE), then per call as without
one, at the plan's `overage_percent` of the listing's price (billing.metering). The
publisher is paid through the royalty ledger: a subscription entry per paid invoice,
reversed by refunds and disputes of its charge.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing import plans, publishers, royalties, stripe_client
from billing import stripe_mirror as mirror
from billing.credit_purchases import from_cents, to_cents
from billing.models import (
    ListingPlan,
    ListingSubscription,
    RoyaltyEntry,
    SubscriptionInvoice,
    SubscriptionStatus,
    SubscriptionUsage,
)
from billing.prices import parse_amount
from billing.stripe_mirror import EventContext
from models_hub.models import ModelListing
from portal.errors import Conflict, InvalidInput, NotFound
from portal.hotcache import HotCache, Stamp
from portal.models import Organization, Role
from portal.services import audit, require_role

MIN_MONTHLY_PRICE = Decimal("0.50")  # Stripe's smallest charge in USD
MAX_MONTHLY_PRICE = Decimal(100_000)
MAX_TRIAL_DAYS = 90
CENT = Decimal("0.01")
FULL_PRICE = Decimal(100)

# --- Plans --------------------------------------------------------------------------


def _monthly_price(value: object) -> Decimal:
    amount = parse_amount(value, "monthly_price")
    if amount != amount.quantize(CENT) or not MIN_MONTHLY_PRICE <= amount <= MAX_MONTHLY_PRICE:
        raise InvalidInput(
            f"monthly_price must be in cents, from {MIN_MONTHLY_PRICE} to {MAX_MONTHLY_PRICE}.",
            param="monthly_price",
        )
    return amount


def _overage_percent(value: object) -> Decimal:
    """The plan's rate beyond its included usage, in percent of the listing's price, to
    the hundredth; empty means the full price."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return FULL_PRICE
    # parse_amount refuses floats, signs, NaN and what no column could hold ("1e400").
    percent = parse_amount(value, "overage_percent")
    if percent != percent.quantize(CENT) or percent > FULL_PRICE:
        raise InvalidInput(
            "overage_percent must be a percentage from 0 to 100 with at most 2 decimal places.",
            param="overage_percent",
        )
    return percent


def _trial_days(value: object) -> int:
    text = str(value).strip() if value not in (None, "") else "0"
    if not text.isdigit() or int(text) > MAX_TRIAL_DAYS:
        raise InvalidInput(
            f"trial_days must be a whole number from 0 to {MAX_TRIAL_DAYS}.", param="trial_days"
        )
    return int(text)


def _plan_name(value: object) -> str:
    name = str(value or "").strip()
    if not name or len(name) > 60:
        raise InvalidInput("A plan needs a name of 1 to 60 characters.", param="name")
    return name


def require_publisher_role(listing: ModelListing, actor: AbstractBaseUser) -> None:
    """Owners and admins of the publishing org manage its plans; staff manage any."""
    if actor.is_staff:
        return
    if listing.org_id is None:
        raise NotFound("Model not found.", code="model_not_found")
    require_role(listing.org, actor, Role.ADMIN)


@transaction.atomic
def create_plan(
    listing: ModelListing,
    actor: AbstractBaseUser,
    *,
    name: object,
    monthly_price: object,
    included_usage: object,
    trial_days: object = 0,
    overage_percent: object = None,
) -> ListingPlan:
    """A new plan on `listing`; with Stripe configured, its monthly Price too (nothing is
    written if Stripe fails). Only publishers Stripe can pay out may sell one."""
    require_publisher_role(listing, actor)
    price = _monthly_price(monthly_price)
    plan = ListingPlan(
        listing=listing,
        name=_plan_name(name),
        monthly_price=price,
        included_usage=parse_amount(included_usage, "included_usage"),
        overage_percent=_overage_percent(overage_percent),
        trial_days=_trial_days(trial_days),
        currency=settings.PORTAL_CURRENCY,
        created_by=actor,
    )
    publishers.require_onboarded_for_paid_price(listing, {"monthly_price": price}, actor)
    plan.save()
    if stripe_client.is_configured():
        created = stripe_client.create_listing_plan_price(
            plan.pk,
            f"{listing.name}: {plan.name}",
            int(price * 100),
            plan.currency,
        )
        plan.stripe_product_id, plan.stripe_price_id = created.product_id, created.price_id
        plan.save(update_fields=["stripe_product_id", "stripe_price_id"])
    if listing.org is not None:
        audit(listing.org, actor, "publisher.plan_created", listing.slug, plan=plan.pk)
    return plan


@transaction.atomic
def retire_plan(plan_id: int, listing: ModelListing, actor: AbstractBaseUser) -> ListingPlan:
    """Takes no new subscribers; existing ones keep the plan (and its price) until they
    cancel. Retiring twice changes nothing."""
    require_publisher_role(listing, actor)
    plan = ListingPlan.objects.select_for_update().filter(pk=plan_id, listing=listing).first()
    if plan is None:
        raise NotFound("Plan not found.", code="plan_not_found")
    if not plan.is_active:
        return plan
    plan.is_active = False
    plan.save(update_fields=["is_active"])
    if plan.stripe_price_id and stripe_client.is_configured():
        stripe_client.deactivate_price(plan.stripe_price_id)
    if listing.org is not None:
        audit(listing.org, actor, "publisher.plan_retired", listing.slug, plan=plan.pk)
    return plan


def offered_plans(listing: ModelListing) -> list[ListingPlan]:
    return list(ListingPlan.objects.filter(listing=listing, is_active=True))


# --- Which subscription covers a call (read by every admission) ------------------------

# An org's listing subscriptions by listing id, cached under the org's scope (see
# billing.hot): admission asks for them on every call to a publisher's listing.
_by_listing: HotCache[dict[int, ListingSubscription]] = HotCache()


def _subscriptions_of(org_id: int) -> dict[int, ListingSubscription]:
    rows = ListingSubscription.objects.select_related("plan").filter(org_id=org_id)
    return {row.listing_id: row for row in rows}


def _gives_access(sub: ListingSubscription, now: datetime) -> bool:
    if sub.status in plans.PAID_ACCESS:
        return True
    if sub.status != SubscriptionStatus.PAST_DUE:
        return False
    since = sub.past_due_since or sub.updated_at
    return now < since + plans.grace_period()


def in_force(
    org_id: int, listing: ModelListing, stamp: Stamp | None, now: datetime | None = None
) -> ListingSubscription | None:
    """The org's subscription to `listing` if it gives access now (paid, trialing, or
    past due within the grace period)."""
    if listing.org_id is None:
        return None
    found = _by_listing.get(org_id, stamp, lambda: _subscriptions_of(org_id)).get(listing.pk)
    return found if found is not None and _gives_access(found, now or timezone.now()) else None


def subscriptions_of(org: Organization) -> list[ListingSubscription]:
    """Every listing subscription of the org, ended ones included (the account page)."""
    return list(
        ListingSubscription.objects.select_related("plan", "listing")
        .filter(org=org)
        .order_by("listing__name")
    )


def period(sub: ListingSubscription, now: datetime) -> tuple[datetime, datetime]:
    """Stripe's current period, rolled forward by months if a renewal is late; calendar
    months for a grant."""
    start, end = sub.current_period_start, sub.current_period_end
    if start is None or end is None:
        return plans.calendar_month(now)
    step = plans.interval_step("month")
    while end <= now:
        start, end = end, end + step
    return start, end


def price_lock(sub: ListingSubscription, now: datetime) -> datetime:
    """Calls under `sub` are priced with the listing prices announced by this time: what
    the subscriber bought, until the first renewal at least the notice period after a
    change was announced (LISTING_PRICE_LOCK_NOTICE_DAYS)."""
    notice = timedelta(days=settings.LISTING_PRICE_LOCK_NOTICE_DAYS)
    renewed_at, _ = period(sub, now)
    return max(sub.prices_announced_by, renewed_at - notice)


def takes_effect_for(sub: ListingSubscription, price_created: datetime, now: datetime) -> datetime:
    """When a price announced at `price_created` starts to apply to `sub` (at its
    effective date, if that is later): its first renewal at least the notice period on."""
    if price_created <= price_lock(sub, now):
        return now
    notice = timedelta(days=settings.LISTING_PRICE_LOCK_NOTICE_DAYS)
    _, renewal = period(sub, now)
    step = plans.interval_step("month")
    while renewal - notice < price_created:
        renewal += step
    return renewal


# --- Included usage ---------------------------------------------------------------------


def usage_for(sub: ListingSubscription, now: datetime) -> SubscriptionUsage:
    """The subscription's counters for the period containing `now`, created once (ON
    CONFLICT DO NOTHING: concurrent first calls of a period share one row)."""
    start, end = period(sub, now)
    included = sub.plan.included_usage
    SubscriptionUsage.objects.bulk_create(
        [SubscriptionUsage(subscription=sub, start=start, end=end, included=included)],
        ignore_conflicts=True,
    )
    return SubscriptionUsage.objects.get(subscription=sub, start=start)


def room(usage: SubscriptionUsage) -> Decimal:
    return max(Decimal(0), usage.included - usage.used - usage.reserved)


def hold(usage_id: int, amount: Decimal) -> bool:
    """Reserves `amount` of the included usage if it is still there (one conditional
    UPDATE: concurrent calls can never hold more than the plan includes)."""
    if not amount:
        return True
    held = SubscriptionUsage.objects.filter(
        pk=usage_id, included__gte=F("used") + F("reserved") + amount
    ).update(reserved=F("reserved") + amount)
    return held == 1


def release(usage_id: int, reserved: Decimal, used: Decimal) -> None:
    """Settlement: the call's hold becomes what it used (never more than it held)."""
    SubscriptionUsage.objects.filter(pk=usage_id).update(
        reserved=F("reserved") - reserved, used=F("used") + used
    )


# --- Grants (operators) -------------------------------------------------------------------


@transaction.atomic
def grant(
    org: Organization, plan: ListingPlan, actor: AbstractBaseUser | None
) -> ListingSubscription:
    """An operator's grant: the org holds `plan` in calendar months, without Stripe."""
    mirror.lock_org(org)
    row = ListingSubscription.objects.select_for_update().filter(org=org, listing=plan.listing)
    current = row.first()
    if current and current.stripe_subscription_id and current.status not in mirror.ENDED:
        raise Conflict(
            "This organization pays for this listing through Stripe; change it there.",
            code="stripe_managed",
        )
    sub, _ = ListingSubscription.objects.update_or_create(
        org=org,
        listing=plan.listing,
        defaults={
            "plan": plan,
            "prices_announced_by": timezone.now(),
            **mirror.granted_state(),
        },
    )
    audit(org, actor, "billing.listing_plan_granted", plan.listing.slug, plan=plan.pk)
    return sub


# --- Checkout -------------------------------------------------------------------------------


def purchasable(org: Organization, plan_id: int) -> ListingPlan:
    """An active plan of a listing the org can call; anything else is not found."""
    plan = (
        ListingPlan.objects.select_related("listing")
        .filter(
            pk=plan_id,
            is_active=True,
            listing__in=ModelListing.objects.callable_by(org),
        )
        .first()
    )
    if plan is None:
        raise NotFound("Plan not found.", code="plan_not_found")
    return plan


def require_not_subscribed(org: Organization, plan: ListingPlan) -> None:
    """One Stripe subscription per org and listing: a second Checkout while one is live
    (paid, trialing, or with a payment problem to fix) would bill the org twice."""
    current = ListingSubscription.objects.filter(org=org, listing=plan.listing).first()
    if current is None or not current.stripe_subscription_id or current.status in mirror.ENDED:
        return
    raise Conflict(
        f"This organization already subscribes to {plan.listing.name} ({current.status}); "
        "change, fix or cancel it in Manage billing.",
        code="already_subscribed",
    )


def had_subscription(org: Organization, plan: ListingPlan) -> bool:
    """A trial is for newcomers to the listing."""
    return ListingSubscription.objects.filter(org=org, listing=plan.listing).exists()


# --- Stripe webhooks ------------------------------------------------------------------------


def plan_of(obj: dict[str, Any]) -> ListingPlan | None:
    """The listing plan a Checkout Session or subscription is for: by its price, or the
    metadata the checkout set."""
    price_ids = [
        (item.get("price") or item.get("plan") or {}).get("id")
        for item in (obj.get("items") or {}).get("data", [])
    ]
    found = ListingPlan.objects.filter(stripe_price_id__in=[p for p in price_ids if p]).first()
    plan_id = str((obj.get("metadata") or {}).get("listing_plan", ""))
    if found is None and plan_id.isdigit():
        found = ListingPlan.objects.filter(pk=int(plan_id)).first()
    return found


def is_listing_object(obj: dict[str, Any]) -> bool:
    return (obj.get("metadata") or {}).get("kind") == stripe_client.LISTING_PLAN_KIND


def apply_subscription(
    org: Organization, plan: ListingPlan, sub: dict[str, Any], ctx: EventContext
) -> str:
    mirror.lock_org(org)
    row = (
        ListingSubscription.objects.select_for_update()
        .filter(org=org, listing_id=plan.listing_id)
        .first()
    )
    if row is not None:
        if not mirror.takes_over(row, sub["id"], sub["status"]):
            return f"ignored: {row.stripe_subscription_id} is the current subscription"
        if row.stripe_subscription_id == sub["id"] and mirror.is_stale(row, ctx):
            return "stale: a newer event was already applied"
    if row is None or row.stripe_subscription_id != sub["id"]:
        # A new subscription buys the prices announced so far.
        row = row or ListingSubscription(org=org, listing_id=plan.listing_id)
        row.prices_announced_by = mirror.epoch(ctx.created) or timezone.now()
    row.plan = plan
    mirror.copy_state(row, sub, ctx)
    row.save()
    audit(org, None, "billing.listing_subscription_synced", sub["id"], status=sub["status"])
    return f"applied: listing plan {plan.pk} {sub['status']}"


def on_checkout_completed(org: Organization, obj: dict[str, Any], ctx: EventContext) -> str:
    plan = plan_of(obj)
    if plan is None or not obj.get("subscription"):
        return "ignored: no matching listing plan"
    # Provisional until the subscription's own events (ranked later) bring its real state.
    provisional = {"id": obj["subscription"], "status": SubscriptionStatus.ACTIVE}
    return apply_subscription(org, plan, provisional, ctx)


def on_subscription(org: Organization, obj: dict[str, Any], ctx: EventContext) -> str:
    plan = plan_of(obj)
    if plan is None:
        return "ignored: no listing plan has this subscription's price"
    return apply_subscription(org, plan, mirror.as_applied(obj, ctx), ctx)


def _record_paid_invoice(row: ListingSubscription, invoice: dict[str, Any]) -> None:
    amount = from_cents(invoice.get("amount_paid") or 0)
    paid, created = SubscriptionInvoice.objects.get_or_create(
        stripe_invoice_id=invoice["id"],
        defaults={
            "subscription": row,
            "charge_id": _id_of(invoice.get("charge")),
            "payment_intent_id": _id_of(invoice.get("payment_intent")),
            "amount": amount,
            "currency": invoice.get("currency") or settings.PORTAL_CURRENCY,
        },
    )
    if created and amount > 0:
        royalties.record_subscription_invoice(paid, row.listing, row.org_id)


def _id_of(value: Any) -> str:
    return (value.get("id") or "") if isinstance(value, dict) else (value or "")


def on_invoice(obj: dict[str, Any], ctx: EventContext) -> str | None:
    """`invoice.paid` / `.payment_failed` of a listing subscription; None if the invoice
    is not one."""
    sub_id = mirror.invoice_subscription_id(obj)
    row = (
        ListingSubscription.objects.select_for_update()
        .select_related("listing")
        .filter(stripe_subscription_id=sub_id)
        .first()
        if sub_id
        else None
    )
    if row is None:
        return None
    if ctx.type == "invoice.paid":
        # Money moved whatever the order of events: its royalty entry is never skipped.
        _record_paid_invoice(row, obj)
    if mirror.is_stale(row, ctx):
        return "stale: a newer state was already applied"
    mirror.apply_invoice(row, ctx)
    row.save()
    return f"applied: listing subscription {row.status}"


def _invoice_of_charge(charge_id: str, payment_intent_id: str) -> SubscriptionInvoice | None:
    found = SubscriptionInvoice.objects.select_for_update().filter(charge_id=charge_id).first()
    if found is None and payment_intent_id:
        query = SubscriptionInvoice.objects.select_for_update()
        found = query.filter(payment_intent_id=payment_intent_id).first()
    return found


def on_charge_refunded(obj: dict[str, Any], ctx: EventContext) -> str:
    """Each refund of a subscription invoice's charge takes its amount back from the
    publisher's ledger (one entry per refund id; for API versions whose charges list no
    refunds, the part of the cumulative total not yet taken)."""
    invoice = _invoice_of_charge(obj.get("id") or "", _id_of(obj.get("payment_intent")))
    if invoice is None:
        return "ignored: not a subscription charge"
    refunds = (obj.get("refunds") or {}).get("data")
    if isinstance(refunds, list):
        amounts = [
            (f"refund:{refund['id']}", from_cents(refund.get("amount") or 0))
            for refund in refunds
            if refund.get("status", "succeeded") in ("succeeded", "pending")
        ]
    else:
        total = from_cents(obj.get("amount_refunded") or 0)
        prefix = f"refund:{obj['id']}:"
        amounts = [(f"{prefix}{to_cents(total)}", total - royalties.taken_back(prefix))]
    written = [
        royalties.reverse_subscription_invoice(invoice, RoyaltyEntry.Kind.REFUND, ref, amount)
        for ref, amount in amounts
        if amount > 0
    ]
    count = sum(entry is not None for entry in written)
    return f"applied: {count} refund entries" if count else "duplicate: refunds already recorded"


def on_dispute(obj: dict[str, Any], ctx: EventContext) -> str:
    """A dispute takes the disputed amount back from the publisher's ledger when opened,
    and gives it back if the platform wins it."""
    invoice = _invoice_of_charge(_id_of(obj.get("charge")), _id_of(obj.get("payment_intent")))
    if invoice is None:
        return "ignored: not a subscription charge"
    amount = from_cents(obj.get("amount") or 0)
    if ctx.type == "charge.dispute.created":
        kind, reference = RoyaltyEntry.Kind.DISPUTE, f"dispute:{obj['id']}"
    elif obj.get("status") == "won":
        kind, reference, amount = RoyaltyEntry.Kind.DISPUTE_WON, f"dispute_won:{obj['id']}", -amount
    else:
        return f"applied: dispute {obj.get('status')}, its reversal stands"
    entry = royalties.reverse_subscription_invoice(invoice, kind, reference, amount)
    return f"applied: {kind}" if entry is not None else "duplicate: dispute already recorded"
