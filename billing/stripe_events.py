"""Stripe's webhook events, applied once each (the event row and its effect commit
together): the site plan's subscription mirrored here, the rest dispatched to the modules
they concern (credit purchases, listing subscriptions, publishers' Connect accounts); and
an operator's resync of a subscription from Stripe.

Mirrored rows change only under a row lock, never read-then-write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing import credit_purchases, listing_subscriptions, publishers, stripe_client
from billing import stripe_mirror as mirror
from billing.models import (
    Customer,
    EventStatus,
    Plan,
    StripeEvent,
    Subscription,
    SubscriptionStatus,
)
from billing.stripe_mirror import EventContext
from portal.models import Organization
from portal.services import audit

logger = logging.getLogger(__name__)

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
