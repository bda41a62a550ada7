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

from billing import hot
from billing.models import Interval, ListingSubscription, Plan, Subscription, SubscriptionStatus
from models_hub.models import ModelListing
from portal.hotcache import HotCache, Stamp
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
    # What the cached rows above were read under; lookups later in the same call (the
    # listing's price) reuse it instead of asking Redis again.
    stamp: Stamp | None = None
    # The org's subscription to the called publisher's listing, when one is in force
    # (set by entitlement): it pays before credits, and its price lock prices the call.
    listing_subscription: ListingSubscription | None = None

    @property
    def metered(self) -> bool:
        return self.plan is not None


def default_plan() -> Plan | None:
    return Plan.objects.filter(is_default=True).first()


# Read by every admission, changed by operators and webhooks: see billing.hot.
_default_plan: HotCache[Plan | None] = HotCache(max_entries=1)
_subscription: HotCache[Subscription | None] = HotCache()
_plan_models: HotCache[frozenset[int]] = HotCache()


def _subscription_of(org: Organization) -> Subscription | None:
    return Subscription.objects.select_related("plan").filter(org=org).first()


def calendar_month(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, start + relativedelta(months=1)


def interval_step(interval: str) -> relativedelta:
    return relativedelta(years=1) if interval == Interval.YEAR else relativedelta(months=1)


def _subscription_period(sub: Subscription, now: datetime) -> tuple[datetime, datetime]:
    """Stripe's current period; rolled forward by whole intervals if the renewal webhook
    is late, so a period never ends while the subscription is still paid for."""
    start, end = sub.current_period_start, sub.current_period_end
    if start is None or end is None:
        return calendar_month(now)
    step = interval_step(sub.plan.interval)
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
    """The plan in force for `org` at `now`; its rows come from the process's cache."""
    now = now or timezone.now()
    stamp = hot.stamp_for(org.pk)
    sub = _subscription.get(org.pk, stamp, lambda: _subscription_of(org))
    if sub is not None and (sub.status in PAID_ACCESS or _in_grace(sub, now)):
        start, end = _subscription_period(sub, now)
        past_due = sub.status == "past_due"
        return PlanState(sub.plan, sub, start, end, in_grace=past_due, stamp=stamp)
    start, end = calendar_month(now)
    plan = _default_plan.get(None, hot.config_part(stamp), default_plan)
    withheld = plan is not None and not org.free_allowance
    return PlanState(plan, sub, start, end, subscription_required=withheld, stamp=stamp)


def _model_ids(plan: Plan) -> frozenset[int]:
    return frozenset(plan.included_models.values_list("pk", flat=True))


def includes(plan: Plan, listing: ModelListing, stamp: Stamp | None = None) -> bool:
    """Whether `plan` covers `listing`; pass the call's `PlanState.stamp` where there is
    one (it saves a Redis round trip). A publisher's listing is never covered: each of
    its calls is charged at its price, so that the publisher is paid for it."""
    if listing.org_id is not None:
        return False
    if listing.task in plan.tasks:
        return True
    current = hot.config_part(stamp) if stamp is not None else hot.config_stamp()
    return listing.pk in _plan_models.get(plan.pk, current, lambda: _model_ids(plan))


def plans_including(listing: ModelListing, *, public_only: bool = True) -> list[Plan]:
    if listing.org_id is not None:
        return []  # see `includes`
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
