"""How an org comes to be on a plan: its Stripe customer, Checkout for a site plan or a
listing's plan, Stripe's customer portal and invoices, and an operator's grant (admin),
which needs no Stripe. What Stripe then tells us is applied by `billing.stripe_events`.

The customer row is created under a row lock, never read-then-write.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from billing import listing_subscriptions, plans, stripe_client
from billing import stripe_mirror as mirror
from billing.models import Customer, Plan, Subscription
from billing.plans import PAID_ACCESS
from portal.errors import Conflict, InvalidInput, NotFound
from portal.models import Organization, Role
from portal.services import audit, require_role


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
