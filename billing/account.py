"""The plan and quota part of `GET /api/v1/account` and of the billing page."""

from __future__ import annotations

from typing import Any

from billing import plans
from billing.models import UsagePeriod
from portal.models import Organization


def _quota(included: int | None, used: int, reserved: int) -> dict[str, int | None]:
    remaining = None if included is None else max(0, included - used - reserved)
    return {"included": included, "used": used, "reserved": reserved, "remaining": remaining}


def _iso(moment) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def billing_summary(org: Organization) -> dict[str, Any]:
    state = plans.plan_state(org)
    period = UsagePeriod.objects.filter(org=org, start=state.period_start).first()
    period = period or UsagePeriod(org=org, start=state.period_start, end=state.period_end)
    plan, sub = state.plan, state.subscription
    has_paid_access = sub is not None and state.plan is not None and plan == sub.plan
    status = sub.status if has_paid_access else "active"
    included_requests = plan.included_requests if plan else None
    included_tokens = plan.included_tokens if plan else None
    if state.subscription_required:
        # A team workspace without a plan: nothing is included until it subscribes.
        status, included_requests, included_tokens = "subscription_required", 0, 0
    return {
        "plan": (
            {
                "slug": plan.slug,
                "name": plan.name,
                "status": status,
                "past_due": state.in_grace,
                "cancel_at_period_end": bool(has_paid_access and sub.cancel_at_period_end),
                "rate_limit_per_minute": plan.rate_limit_per_minute,
                "overage_per_1k_tokens": (
                    str(plan.overage_per_1k_tokens) if plan.allows_overage else None
                ),
            }
            if plan
            else None
        ),
        "quota": {
            "requests": _quota(included_requests, period.requests_used, period.requests_reserved),
            "tokens": _quota(included_tokens, period.tokens_used, period.tokens_reserved),
            "overage_tokens": period.overage_tokens,
            "cost": str(period.cost),
        },
        "period": {"start": _iso(state.period_start), "end": _iso(state.period_end)},
    }
