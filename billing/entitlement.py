"""Whether an org may call a model, and under which plan (called at admission through
`billing.quota`): the plan in force must cover the model, or the org pays per call with
credits; the plan's rate limit is counted with the caller's own."""

from __future__ import annotations

from dataclasses import replace

from billing import listing_subscriptions, plans
from billing.models import BillingAccount
from billing.plans import PlanState
from models_hub.models import ModelListing
from portal import ratelimit
from portal.errors import PaymentRequired
from portal.models import Organization


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
