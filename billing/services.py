"""Every billing write that matters besides metering (`billing.metering`): entitlement,
subscriptions (checkout, portal, admin grants, Stripe webhooks), and overage reports to
Stripe.

Counters change only through conditional UPDATEs or under a row lock, never read-then-write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from billing import credit_purchases, listing_subscriptions, plans, publishers, stripe_client
from billing import stripe_mirror as mirror
from billing.models import (
    BillingAccount,
    CallCost,
    Customer,
    EventStatus,
    MeteredCost,
    MeterReport,
    Plan,
    StripeEvent,
    Subscription,
    SubscriptionStatus,
    UsagePeriod,
)
from billing.plans import PAID_ACCESS, PlanState
from billing.stripe_mirror import EventContext
from models_hub.models import ModelListing
from portal import ratelimit
from portal.errors import Conflict, InvalidInput, NotFound, PaymentRequired
from portal.models import Organization, Role
from portal.services import audit, require_role

logger = logging.getLogger(__name__)

# --- Entitlement and quota (called by the prediction pipeline) -----------------------


def _plan_names(listing: ModelListing) -> str:
    names = [plan.name for plan in plans.plans_including(listing)]
    return ", ".join(names)


def _pays_with_credits(org: Organization) -> bool:
    return BillingAccount.objects.filter(org=org, balance__gt=0).exists()


def check_entitlement(org: Organization, listing: ModelListing) -> PlanState:
    """The plan in force, if the org may call the model (its plan covers it, or it has
    credits to pay per call). Whether the money suffices is settled at reservation
    (`metering.reserve`); the plan's rate limit is counted with the caller's
    (`plan_rate_limit`)."""
    state = plans.plan_state(org)
    plan = state.plan
    if plan is None:
        return state
    subscribed = listing_subscriptions.in_force(org.pk, listing, state.stamp)
    if subscribed is not None:
        return replace(state, listing_subscription=subscribed)
    if state.subscription_required and not _pays_with_credits(org):
        raise PaymentRequired(
            f"{org.name} has no plan: the {plan.name} plan comes with your personal "
            "workspace, and team workspaces start when they subscribe. Choose a plan on the "
            "pricing page (/pricing/), buy credits on the billing page (/billing/), or use "
            "your personal workspace.",
            code="subscription_required",
        )
    covered = not state.subscription_required and plans.includes(plan, listing, state.stamp)
    if not covered and not _pays_with_credits(org):
        names = _plan_names(listing)
        where = f" It is included in: {names}." if names else ""
        raise PaymentRequired(
            f"{listing.name} is not included in your {plan.name} plan.{where} "
            "Choose a plan on the pricing page (/pricing/), or pay per call with credits "
            "(billing page, /billing/).",
            code="model_not_in_plan",
            param="model",
        )
    return state


def plan_rate_limit(org: Organization, state: PlanState) -> ratelimit.Limit | None:
    """The plan's requests per minute, counted with the caller's own limit."""
    plan = state.plan
    if plan is None:
        return None
    return ratelimit.Limit(
        name=f"plan:{org.pk}",
        per_minute=plan.rate_limit_per_minute,
        message=f"Your {plan.name} plan allows {plan.rate_limit_per_minute} requests per minute.",
        code="plan_rate_limited",
    )


# --- Customers, checkout, portal ---------------------------------------------------


def ensure_customer(org: Organization, user: AbstractBaseUser) -> str:
    """The org's Stripe customer id, creating the customer exactly once."""
    with transaction.atomic():
        Customer.objects.get_or_create(org=org)
        # The lock makes a second, concurrent first checkout wait and reuse the customer.
        customer = Customer.objects.select_for_update().get(org=org)
        if customer.stripe_customer_id:
            return customer.stripe_customer_id
        customer.stripe_customer_id = stripe_client.create_customer(
            org.pk, org.name, getattr(user, "email", "")
        )
        customer.save(update_fields=["stripe_customer_id"])
        audit(org, user, "billing.customer_created", customer.stripe_customer_id)
        return customer.stripe_customer_id


def purchasable_plan(slug: str) -> Plan:
    plan = Plan.objects.filter(slug=slug, is_public=True).first()
    if plan is None:
        raise NotFound("Plan not found.", code="plan_not_found")
    return plan


def start_checkout(
    org: Organization, user: AbstractBaseUser, slug: str, success_url: str, cancel_url: str
) -> str:
    """The URL of a Stripe Checkout Session that subscribes the org to the plan."""
    require_role(org, user, Role.OWNER)
    plan = purchasable_plan(slug)
    if plan.is_free:
        raise InvalidInput(
            f"{plan.name} needs no checkout: every organization without a paid plan is on it.",
            code="plan_is_free",
        )
    current = plans.plan_state(org)
    if (
        current.subscription
        and current.subscription.stripe_subscription_id
        and (current.subscription.status in PAID_ACCESS)
    ):
        raise Conflict(
            "This organization already has a subscription; change plans in Manage billing.",
            code="already_subscribed",
        )
    if not stripe_client.is_configured() or not plan.stripe_price_id:
        raise stripe_client.BillingNotConfigured(
            f"Billing is not configured for the {plan.name} plan on this portal. "
            "Ask an administrator to grant it."
        )
    customer_id = ensure_customer(org, user)
    # A trial is for newcomers: an org that ever had a subscription pays from day one.
    had_subscription = Subscription.objects.filter(org=org).exists()
    url = stripe_client.create_checkout_session(
        stripe_client.CheckoutRequest(
            org_id=org.pk,
            customer_id=customer_id,
            plan=plan,
            success_url=success_url,
            cancel_url=cancel_url,
            trial_days=0 if had_subscription else plan.trial_days,
        )
    )
    audit(org, user, "billing.checkout_started", plan.slug)
    return url


def start_listing_checkout(
    org: Organization, user: AbstractBaseUser, plan_id: int, success_url: str, cancel_url: str
) -> str:
    """The URL of a Stripe Checkout Session that subscribes the org to a listing's plan,
    beside its site plan and its other listing subscriptions."""
    require_role(org, user, Role.OWNER)
    plan = listing_subscriptions.purchasable(org, plan_id)
    listing_subscriptions.require_not_subscribed(org, plan)
    if not stripe_client.is_configured() or not plan.stripe_price_id:
        raise stripe_client.BillingNotConfigured(
            f"Billing is not configured for {plan.listing.name}'s plans on this portal. "
            "Ask an administrator to grant the plan, or pay per call with credits."
        )
    trial_days = 0 if listing_subscriptions.had_subscription(org, plan) else plan.trial_days
    url = stripe_client.create_listing_checkout_session(
        stripe_client.ListingCheckoutRequest(
            org_id=org.pk,
            customer_id=ensure_customer(org, user),
            plan_id=plan.pk,
            price_id=plan.stripe_price_id,
            success_url=success_url,
            cancel_url=cancel_url,
            trial_days=trial_days,
        )
    )
    audit(org, user, "billing.listing_checkout_started", plan.listing.slug, plan=plan.pk)
    return url


def open_customer_portal(org: Organization, user: AbstractBaseUser, return_url: str) -> str:
    require_role(org, user, Role.OWNER)
    if not stripe_client.is_configured():
        raise stripe_client.BillingNotConfigured("Billing is not configured on this portal.")
    customer = Customer.objects.filter(org=org, stripe_customer_id__isnull=False).first()
    if customer is None:
        raise Conflict(
            "This organization has no billing account yet; subscribe to a plan first.",
            code="no_billing_account",
        )
    return stripe_client.create_portal_session(customer.stripe_customer_id, return_url)


def invoices_for(org: Organization) -> list[stripe_client.InvoiceSummary]:
    customer = Customer.objects.filter(org=org, stripe_customer_id__isnull=False).first()
    if customer is None or not stripe_client.is_configured():
        return []
    return stripe_client.list_invoices(customer.stripe_customer_id)


@transaction.atomic
def grant_plan(org: Organization, plan: Plan, actor: AbstractBaseUser | None) -> Subscription:
    """An operator's grant (admin): the org is on `plan` until changed, with no Stripe."""
    current = Subscription.objects.select_for_update().filter(org=org).first()
    if current and current.stripe_subscription_id and current.status != "canceled":
        raise Conflict(
            "This organization pays through Stripe; change its plan there, not by a grant.",
            code="stripe_managed",
        )
    sub, _ = Subscription.objects.update_or_create(
        org=org,
        defaults={
            "plan": plan,
            **mirror.granted_state(),
        },
    )
    audit(org, actor, "billing.plan_granted", plan.slug)
    return sub


# --- Stripe webhooks ---------------------------------------------------------------

# Ties between events of the same second are broken by how far along the lifecycle the
# event type is: a subscription's deletion is never undone by its creation.
EVENT_RANK = {
    "checkout.session.completed": 0,
    "customer.subscription.created": 1,
    "invoice.paid": 2,
    "invoice.payment_failed": 2,
    "customer.subscription.updated": 3,
    "customer.subscription.deleted": 4,
}
RESYNC_RANK = 5


class WebhookHandlerFailed(Exception):
    """The event was recorded as failed; Stripe must retry it."""


def _org_from(metadata: dict | None, customer_id: str | None) -> Organization | None:
    org_id = (metadata or {}).get("org")
    if org_id and str(org_id).isdigit():
        org = Organization.objects.filter(pk=int(org_id)).first()
        if org is not None:
            return org
    if customer_id:
        customer = Customer.objects.select_related("org").filter(stripe_customer_id=customer_id)
        found = customer.first()
        return found.org if found else None
    return None


def _plan_from(sub: dict[str, Any]) -> Plan | None:
    price_ids = [
        (item.get("price") or item.get("plan") or {}).get("id")
        for item in (sub.get("items") or {}).get("data", [])
    ]
    plan = Plan.objects.filter(stripe_price_id__in=[p for p in price_ids if p]).first()
    if plan is None and (sub.get("metadata") or {}).get("plan"):
        plan = Plan.objects.filter(slug=sub["metadata"]["plan"]).first()
    return plan


def _apply_subscription(
    org: Organization, sub: dict[str, Any], plan: Plan, ctx: EventContext
) -> str:
    mirror.lock_org(org)
    row = Subscription.objects.select_for_update().filter(org=org).first()
    status = sub["status"]
    if row is not None:
        if not mirror.takes_over(row, sub["id"], status):
            return f"ignored: {row.stripe_subscription_id} is the current subscription"
        if row.stripe_subscription_id == sub["id"] and mirror.is_stale(row, ctx):
            return "stale: a newer event was already applied"
    row = row or Subscription(org=org)
    row.plan = plan
    mirror.copy_state(row, sub, ctx)
    row.save()
    audit(org, None, "billing.subscription_synced", sub["id"], status=status, plan=plan.slug)
    return f"applied: {plan.slug} {status}"


def _on_checkout_completed(obj: dict[str, Any], ctx: EventContext) -> str:
    if obj.get("mode") == "payment":
        return credit_purchases.on_checkout_completed(obj, ctx)
    if obj.get("mode") != "subscription" or not obj.get("subscription"):
        return "ignored: not a subscription checkout"
    org = _org_from({"org": obj.get("client_reference_id")}, obj.get("customer"))
    if org is None:
        return "ignored: no matching organization"
    mirror.lock_org(org)
    if obj.get("customer"):
        Customer.objects.update_or_create(org=org, defaults={"stripe_customer_id": obj["customer"]})
    if listing_subscriptions.is_listing_object(obj):
        return listing_subscriptions.on_checkout_completed(org, obj, ctx)
    plan = Plan.objects.filter(slug=(obj.get("metadata") or {}).get("plan", "")).first()
    if plan is None:
        return "ignored: no matching plan"
    # Provisional until the subscription's own events (ranked later) bring its real state.
    provisional = {"id": obj["subscription"], "status": SubscriptionStatus.ACTIVE}
    return _apply_subscription(org, provisional, plan, ctx)


def _on_subscription(obj: dict[str, Any], ctx: EventContext) -> str:
    org = _org_from(obj.get("metadata"), obj.get("customer"))
    if org is None:
        return "ignored: no organization for this customer"
    if listing_subscriptions.is_listing_object(obj):
        return listing_subscriptions.on_subscription(org, obj, ctx)
    plan = _plan_from(obj)
    if plan is None:
        return "ignored: no plan has this subscription's price"
    return _apply_subscription(org, mirror.as_applied(obj, ctx), plan, ctx)


def _on_invoice(obj: dict[str, Any], ctx: EventContext) -> str:
    sub_id = mirror.invoice_subscription_id(obj)
    row = None
    if sub_id:
        row = Subscription.objects.select_for_update().filter(stripe_subscription_id=sub_id)
        row = row.first()
    if row is None:
        listing_outcome = listing_subscriptions.on_invoice(obj, ctx)
        return listing_outcome or "ignored: not one of our subscriptions"
    if mirror.is_stale(row, ctx):
        return "stale: a newer event was already applied"
    mirror.apply_invoice(row, ctx)
    row.save()
    return f"applied: {row.status}"


def _on_charge_refunded(obj: dict[str, Any], ctx: EventContext) -> str:
    """Credits charges name their kind in metadata; subscription invoices' charges are
    found through the invoice that was paid with them."""
    if credit_purchases.is_credits_charge(obj):
        return credit_purchases.on_charge_refunded(obj, ctx)
    return listing_subscriptions.on_charge_refunded(obj, ctx)


HANDLERS: dict[str, Callable[[dict[str, Any], EventContext], str]] = {
    "checkout.session.completed": _on_checkout_completed,
    "customer.subscription.created": _on_subscription,
    "customer.subscription.updated": _on_subscription,
    "customer.subscription.deleted": _on_subscription,
    "invoice.paid": _on_invoice,
    "invoice.payment_failed": _on_invoice,
    # Prepaid credits: purchases, auto top-ups, refunds (billing/credit_purchases.py).
    "checkout.session.async_payment_succeeded": credit_purchases.on_checkout_completed,
    "payment_intent.succeeded": credit_purchases.on_payment_intent_succeeded,
    "payment_intent.payment_failed": credit_purchases.on_payment_intent_failed,
    "charge.refunded": _on_charge_refunded,
    # Subscription invoices of publishers' listings (billing/listing_subscriptions.py).
    "charge.dispute.created": listing_subscriptions.on_dispute,
    "charge.dispute.closed": listing_subscriptions.on_dispute,
    # Publishers' Connect accounts (billing/publishers.py).
    "account.updated": publishers.apply_account_updated,
}


def _record_failure(event: dict[str, Any], exc: Exception) -> None:
    with transaction.atomic():
        row, created = StripeEvent.objects.select_for_update().get_or_create(
            stripe_event_id=event["id"],
            defaults={
                "type": event["type"],
                "created": event["created"],
                "payload": event,
                "status": EventStatus.FAILED,
            },
        )
        row.status = EventStatus.FAILED
        row.error = f"{type(exc).__name__}: {exc}"[:5000]
        if not created:
            row.attempts = F("attempts") + 1
        row.save()


def process_event(event: dict[str, Any]) -> str:
    """Applies a verified event once: the event row and its effect commit together, so a
    duplicate finds the row and does nothing. A failed handler leaves the event marked
    failed (a retry runs it again) and raises WebhookHandlerFailed."""
    ctx = EventContext(
        event["id"], event["type"], int(event["created"]), EVENT_RANK.get(event["type"], 0)
    )
    try:
        with transaction.atomic():
            row, created = StripeEvent.objects.select_for_update().get_or_create(
                stripe_event_id=ctx.id,
                defaults={"type": ctx.type, "created": ctx.created, "payload": event},
            )
            if not created and row.status != EventStatus.FAILED:
                return "duplicate"
            handler = HANDLERS.get(ctx.type)
            row.outcome = handler(event["data"]["object"], ctx) if handler else "unhandled type"
            row.status = EventStatus.PROCESSED if handler else EventStatus.IGNORED
            row.error, row.processed_at = "", timezone.now()
            if not created:
                row.attempts += 1
            row.save()
            return row.status
    except Exception as exc:
        # Recorded for operators (admin shows the error), then re-raised as a failure
        # so the view answers non-2xx and Stripe retries.
        logger.exception("Stripe event %s (%s) failed", ctx.id, ctx.type)
        _record_failure(event, exc)
        raise WebhookHandlerFailed(ctx.id) from exc


def resync_subscription(sub: Subscription) -> str:
    """Re-reads the subscription from Stripe and applies it as the newest state."""
    if not sub.stripe_subscription_id:
        return "not a Stripe subscription"
    remote = stripe_client.retrieve_subscription(sub.stripe_subscription_id)
    ctx = EventContext("resync", "resync", int(time.time()), RESYNC_RANK)
    with transaction.atomic():
        plan = _plan_from(remote) or sub.plan
        return _apply_subscription(sub.org, remote, plan, ctx)


# --- Overage reporting (beat) --------------------------------------------------------

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


# --- Plans in Stripe (manage.py sync_plans) ------------------------------------------


def _sync_plan(plan: Plan, meter_id: Callable[[], str]) -> str:
    product_id = stripe_client.upsert_product(plan)
    fields = ["stripe_product_id"]
    plan.stripe_product_id = product_id
    changed = not plan.stripe_price_id or not stripe_client.price_matches(
        plan.stripe_price_id, plan.price_cents, plan.interval, plan.currency
    )
    if changed:
        # Prices are immutable in Stripe: a new amount is a new price, the old one retires
        # (existing subscribers keep it until they change plans).
        old = plan.stripe_price_id
        plan.stripe_price_id = stripe_client.create_price(plan, product_id)
        fields.append("stripe_price_id")
        if old:
            stripe_client.deactivate_price(old)
    if plan.overage_allowed and not plan.stripe_overage_price_id:
        plan.stripe_overage_price_id = stripe_client.create_overage_price(
            plan, product_id, meter_id()
        )
        fields.append("stripe_overage_price_id")
    plan.save(update_fields=fields)
    return f"{plan.slug}: product {product_id}, price {plan.stripe_price_id}" + (
        " (new)" if changed else ""
    )


def sync_plans() -> list[str]:
    """Creates or updates the Stripe Product and Prices of every paid plan."""
    meter: list[str] = []

    def meter_id() -> str:
        if not meter:
            meter.append(stripe_client.ensure_meter())
        return meter[0]

    lines = []
    for plan in Plan.objects.order_by("sort_order"):
        if plan.is_free:
            lines.append(f"{plan.slug}: free, nothing to sync")
            continue
        lines.append(_sync_plan(plan, meter_id))
    return lines
