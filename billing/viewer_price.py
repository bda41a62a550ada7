"""What one call to a listing costs the viewer, on the viewer's own plan (the model page's
price statement, templates/billing/_price_for_viewer.html).

The listing's price is the same for everyone; what differs by plan is where the money
comes from and what happens past the allowance. A plan without overage stops at its cap
(or draws on credits): it must never be shown another plan's overage terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from billing import listing_subscriptions, plans
from billing.account import allowance_left, money, terms_for
from billing.models import BillingAccount
from billing.pricing import listing_pricing, price_lines
from models_hub.models import ModelListing
from portal.models import Organization


@dataclass(frozen=True)
class ViewerPrice:
    lines: list[str]  # the per-call price, one line per part; empty: free
    plan_name: str | None  # the viewer's plan, None when signed out or billing is off
    # Past the allowance: "overage", "credits", "stop" (hard cap), or "" (no allowance).
    beyond: str
    terms: str | None  # the full sentence of billing.account.terms_for
    allowance_left: str = ""  # e.g. "$1", on a plan with an allowance


def _beyond(org: Organization, state: plans.PlanState) -> str:
    plan = state.plan
    if plan is None or plan.allowance is None:
        return ""
    if plan.overage_allowed and not state.subscription_required:
        return "overage"
    account = BillingAccount.objects.filter(org=org).first()
    return "credits" if account and account.balance > Decimal(0) else "stop"


def price_for_viewer(org: Organization | None, listing: ModelListing) -> ViewerPrice:
    lines = price_lines(listing_pricing(listing))
    if org is None:
        return ViewerPrice(lines, None, "", None)
    state = plans.plan_state(org)
    if state.plan is None:
        return ViewerPrice(lines, None, "", None)
    terms = terms_for(org, listing)
    on_plan = (
        not state.subscription_required
        and plans.includes(state.plan, listing, state.stamp)
        and listing_subscriptions.in_force(org.pk, listing, state.stamp) is None
    )
    if not on_plan:
        # Not paid from the plan's allowance (not in the plan, or a listing subscription
        # pays first): the terms sentence says how it is paid instead.
        return ViewerPrice(lines, None, "", terms)
    left = money(allowance_left(org, state)) if state.plan.allowance is not None else ""
    return ViewerPrice(lines, state.plan.name, _beyond(org, state), terms, left)
