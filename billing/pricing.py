"""The pricing block of a model page and of `GET /api/v1/models/{slug}`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing import plans
from models_hub.models import ModelListing


class OveragePrice(dict):
    """The cheapest overage price among the plans that include a model.

    A dict for the API (`{"per_1k_tokens": "0.0030", "currency": "usd"}`) that prints as
    "$0.0030 per 1K tokens" in a template, so both views of the catalog read naturally.
    """

    def __str__(self) -> str:
        return f"${self['per_1k_tokens']} per 1K tokens"


def listing_pricing(listing: ModelListing) -> dict[str, Any]:
    including = plans.plans_including(listing)
    overages = [p.overage_per_1k_tokens for p in including if p.allows_overage]
    cheapest: Decimal | None = min(overages) if overages else None
    return {
        "plans": [{"slug": plan.slug, "name": plan.name} for plan in including],
        "overage": (
            OveragePrice(per_1k_tokens=str(cheapest), currency=including[0].currency)
            if cheapest is not None
            else None
        ),
    }
