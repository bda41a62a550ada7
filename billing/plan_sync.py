"""The paid plans' Products and Prices in Stripe (`manage.py sync_plans`)."""

from __future__ import annotations

from collections.abc import Callable

from billing import stripe_client
from billing.models import Plan


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
