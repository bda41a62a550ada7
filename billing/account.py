"""The plan, allowance, credits and spend part of `GET /api/v1/account` and of the
billing page, and what the model page tells a viewer about paying for a listing: money as
decimal strings, in the portal's currency."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from billing import listing_subscriptions, plans
from billing.models import (
    BillingAccount,
    ListingPlan,
    ListingSubscription,
    SubscriptionUsage,
    UsagePeriod,
)
from billing.prices import decimal_string
from billing.stripe_mirror import ENDED
from portal.models import Organization


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else decimal_string(Decimal(value))


def _iso(moment) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _allowance(included: Decimal | None, period: UsagePeriod) -> dict[str, str | None]:
    used, reserved = period.allowance_used, period.allowance_reserved
    remaining = None if included is None else max(Decimal(0), included - used - reserved)
    return {
        "included": _amount(included),
        "used": _amount(used),
        "reserved": _amount(reserved),
        "remaining": _amount(remaining),
    }


def _spend(cap: Decimal | None, period: UsagePeriod) -> dict[str, str | None]:
    spent = period.spent
    remaining = None if cap is None else max(Decimal(0), cap - spent - period.paid_reserved)
    return {
        "cap": _amount(cap),
        "spent": _amount(spent),
        "reserved": _amount(period.paid_reserved),
        "remaining": _amount(remaining),
    }


def _plan(state: plans.PlanState, status: str) -> dict[str, Any] | None:
    plan, sub = state.plan, state.subscription
    if plan is None:
        return None
    return {
        "slug": plan.slug,
        "name": plan.name,
        "status": status,
        "past_due": state.in_grace,
        "cancel_at_period_end": bool(
            sub is not None and sub.plan == plan and sub.cancel_at_period_end
        ),
        "rate_limit_per_minute": plan.rate_limit_per_minute,
        "allowance": _amount(plan.allowance),
        "overage_allowed": plan.overage_allowed,
    }


def _listing_subscription(sub: ListingSubscription) -> dict[str, Any]:
    start, end = listing_subscriptions.period(sub, timezone.now())
    usage = SubscriptionUsage.objects.filter(subscription=sub, start=start).first()
    used = usage.used if usage else Decimal(0)
    reserved = usage.reserved if usage else Decimal(0)
    included = sub.plan.included_usage
    return {
        "model": sub.listing.slug,
        "plan": {"id": sub.plan.pk, "name": sub.plan.name},
        "monthly_price": _amount(sub.plan.monthly_price),
        "overage_percent": _amount(sub.plan.overage_percent),
        "status": sub.status,
        "cancel_at_period_end": sub.cancel_at_period_end,
        "included_usage": {
            "included": _amount(included),
            "used": _amount(used),
            "reserved": _amount(reserved),
            "remaining": _amount(max(Decimal(0), included - used - reserved)),
        },
        "period": {"start": _iso(start), "end": _iso(end)},
    }


def billing_summary(org: Organization) -> dict[str, Any]:
    state = plans.plan_state(org)
    period = UsagePeriod.objects.filter(org=org, start=state.period_start).first()
    period = period or UsagePeriod(org=org, start=state.period_start, end=state.period_end)
    account = BillingAccount.objects.filter(org=org).first() or BillingAccount(org=org)
    plan, sub = state.plan, state.subscription
    has_paid_access = sub is not None and plan is not None and plan == sub.plan
    status = sub.status if has_paid_access else "active"
    included = plan.allowance if plan else None
    if state.subscription_required:
        # A team workspace without a plan: nothing is included until it subscribes.
        status, included = "subscription_required", Decimal(0)
    return {
        "plan": _plan(state, status),
        "subscriptions": [
            _listing_subscription(sub) for sub in listing_subscriptions.subscriptions_of(org)
        ],
        "quota": {
            "allowance": _allowance(included, period),
            "requests": period.requests,
            "input_tokens": period.input_tokens,
            "output_tokens": period.output_tokens,
            "overage": _amount(period.overage_used),
        },
        "credits": {
            "balance": _amount(account.balance),
            "reserved": _amount(account.credits_reserved),
        },
        "spend": _spend(account.spend_cap, period),
        "currency": settings.PORTAL_CURRENCY,
        "period": {"start": _iso(state.period_start), "end": _iso(state.period_end)},
    }


def money(amount: Decimal) -> str:
    """An amount in the portal's currency, as the pages write it."""
    text = decimal_string(amount)
    currency = settings.PORTAL_CURRENCY
    return f"${text}" if currency == "usd" else f"{text} {currency.upper()}"


def allowance_left(org: Organization, state: plans.PlanState) -> Decimal:
    """What is left of the plan's allowance this period (its reservations count as used)."""
    period = UsagePeriod.objects.filter(org=org, start=state.period_start).first()
    used = (period.allowance_used + period.allowance_reserved) if period else Decimal(0)
    return max(Decimal(0), state.plan.allowance - used)


def terms_for(org: Organization | None, listing) -> str | None:
    """How the viewer's org would pay for a call to `listing` (the model page's "for you"
    line); None when signed out or with billing off."""
    if org is None:
        return None
    state = plans.plan_state(org)
    plan = state.plan
    if plan is None:
        return None
    account = BillingAccount.objects.filter(org=org).first()
    balance = account.balance if account else Decimal(0)
    credits = f"your credits pay ({money(balance)} left)" if balance > 0 else ""
    subscribed = listing_subscriptions.in_force(org.pk, listing, state.stamp)
    if subscribed is not None:
        percent = subscribed.plan.overage_percent
        rate = "" if percent == 100 else f", at {decimal_string(percent)}% of these prices"
        beyond = f"; beyond it{rate}, {credits or 'buy credits'}"
        return f"Paid from your {subscribed.plan.name} subscription's included usage{beyond}."
    if state.subscription_required or not plans.includes(plan, listing, state.stamp):
        if credits:
            return f"Not in your plan: {credits} at these prices."
        if listing_subscriptions.offered_plans(listing):
            return (
                "Not in your plan: subscribe to one of its plans, or buy credits to pay per call."
            )
        return "Not in your plan: buy credits to pay per call, or choose a plan that includes it."
    if plan.allowance is None:
        return f"Included in your {plan.name} plan."
    left = allowance_left(org, state)
    beyond = credits or ("overage at these prices" if plan.overage_allowed else "")
    then = f"; beyond it, {beyond}" if beyond else ""
    return (
        f"Paid from your {plan.name} plan's allowance at these prices "
        f"({money(left)} left this period){then}."
    )


@dataclass(frozen=True)
class ListingOffer:
    """The model page's subscription plans of a listing, and the viewer org's own
    subscription to it (None if it has none, or one that has ended)."""

    plans: list[dict[str, Any]]
    subscription: ListingSubscription | None


def _offered(plan: ListingPlan) -> dict[str, Any]:
    return {
        "id": plan.pk,
        "name": plan.name,
        "monthly_price": _amount(plan.monthly_price),
        "included_usage": _amount(plan.included_usage),
        "overage_percent": _amount(plan.overage_percent),
        "trial_days": plan.trial_days,
    }


def listing_offer(org: Organization | None, listing) -> ListingOffer:
    offered = [_offered(plan) for plan in listing_subscriptions.offered_plans(listing)]
    current = None
    if org is not None:
        rows = ListingSubscription.objects.select_related("plan")
        current = rows.filter(org=org, listing=listing).exclude(status__in=ENDED).first()
    return ListingOffer(offered, current)
