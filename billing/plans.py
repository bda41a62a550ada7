"""Which plan an org is on right now, what it unlocks, and its current billing period.

Reads only. "No subscription row" means the default (free) plan; with no default plan
configured at all, billing is off and every callable model is unmetered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.utils import timezone

from billing.models import Interval, Plan, Subscription, SubscriptionStatus
from models_hub.models import ModelListing
from portal.models import Organization

PAID_ACCESS = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING)


@dataclass(frozen=True)
class PlanState:
    """The plan in force for an org, why, and the period its quota counts in."""

    plan: Plan | None
    subscription: Subscription | None
    period_start: datetime
    period_end: datetime
    in_grace: bool = False
    # A team workspace without a paid plan: `plan` is the default one, but its allowance
    # belongs to personal workspaces, so nothing may be spent until the org subscribes.
    subscription_required: bool = False

    @property
    def metered(self) -> bool:
        return self.plan is not None


def default_plan() -> Plan | None:
    return Plan.objects.filter(is_default=True).first()


def _calendar_month(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, start + relativedelta(months=1)


def _step(interval: str) -> relativedelta:
    return relativedelta(years=1) if interval == Interval.YEAR else relativedelta(months=1)


def _subscription_period(sub: Subscription, now: datetime) -> tuple[datetime, datetime]:
    """Stripe's current period; rolled forward by whole intervals if the renewal webhook
    is late, so a period never ends while the subscription is still paid for."""
    start, end = sub.current_period_start, sub.current_period_end
    if start is None or end is None:
        return _calendar_month(now)
    step = _step(sub.plan.interval)
    while end <= now:
        start, end = end, end + step
    return start, end


def grace_period() -> timedelta:
    return timedelta(days=settings.BILLING_PAST_DUE_GRACE_DAYS)


def _in_grace(sub: Subscription, now: datetime) -> bool:
    if sub.status != SubscriptionStatus.PAST_DUE:
        return False
    since = sub.past_due_since or sub.updated_at
    return now < since + grace_period()


def plan_state(org: Organization, now: datetime | None = None) -> PlanState:
    now = now or timezone.now()
    sub = Subscription.objects.select_related("plan").filter(org=org).first()
    if sub is not None and (sub.status in PAID_ACCESS or _in_grace(sub, now)):
        start, end = _subscription_period(sub, now)
        return PlanState(sub.plan, sub, start, end, in_grace=sub.status == "past_due")
    start, end = _calendar_month(now)
    plan = default_plan()
    withheld = plan is not None and not org.free_allowance
    return PlanState(plan, sub, start, end, subscription_required=withheld)


def includes(plan: Plan, listing: ModelListing) -> bool:
    if listing.task in plan.tasks:
        return True
    return plan.included_models.filter(pk=listing.pk).exists()


def plans_including(listing: ModelListing, *, public_only: bool = True) -> list[Plan]:
    plans = Plan.objects.filter(is_public=True) if public_only else Plan.objects.all()
    # Tasks are a JSON list: filtered here, since SQLite (the embedded default) has no
    # JSON containment lookup.
    with_model = set(
        Plan.included_models.through.objects.filter(modellisting=listing).values_list(
            "plan_id", flat=True
        )
    )
    return [plan for plan in plans if plan.pk in with_model or listing.task in plan.tasks]


def overage_cost(tokens: int, plan: Plan) -> Decimal:
    if not tokens or plan.overage_per_1k_tokens is None:
        return Decimal(0)
    return plan.overage_per_1k_tokens * Decimal(tokens) / 1000
