"""The `pricing` object of the catalog (API.md, "Catalog"): the listing's price in force
now, as decimal strings, and the public plans that include it. Built for a whole page of
listings at once, in a fixed number of queries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from billing.models import ListingPrice, Plan
from billing.prices import PARTS, decimal_string, prices_at
from models_hub.models import ModelListing


def _plans_by_listing(listings: list[ModelListing]) -> dict[int, list[Plan]]:
    public = list(Plan.objects.filter(is_public=True))
    # Tasks are a JSON list: matched here, since SQLite (the embedded default) has no
    # JSON containment lookup.
    links = Plan.included_models.through.objects.filter(
        modellisting__in=[listing.pk for listing in listings]
    ).values_list("modellisting_id", "plan_id")
    with_model: set[tuple[int, int]] = set(links)
    return {
        listing.pk: [
            plan
            for plan in public
            if (listing.pk, plan.pk) in with_model or listing.task in plan.tasks
        ]
        for listing in listings
    }


def pricing_object(price: ListingPrice, including: list[Plan]) -> dict[str, Any]:
    return {
        "currency": price.currency,
        **{part: decimal_string(getattr(price, part)) for part in PARTS},
        "plans": [{"slug": plan.slug, "name": plan.name} for plan in including],
    }


def catalog_pricing(listings: Iterable[ModelListing]) -> dict[int, dict[str, Any]]:
    """The pricing object of each listing, keyed by listing id (three queries in all)."""
    listings = list(listings)
    prices = prices_at(listings)
    plans = _plans_by_listing(listings)
    return {
        listing.pk: pricing_object(prices[listing.pk], plans[listing.pk]) for listing in listings
    }


def listing_pricing(listing: ModelListing) -> dict[str, Any]:
    return catalog_pricing([listing])[listing.pk]


PRICE_LINE_UNITS = {
    "input_per_million": "per 1M input tokens",
    "output_per_million": "per 1M output tokens",
    "per_request": "per request",
    "per_second": "per second",
}


def price_lines(pricing: dict[str, Any]) -> list[str]:
    """The model page's price, one line per part that is not zero; none means free."""
    currency = pricing["currency"]
    lines = []
    for part, unit in PRICE_LINE_UNITS.items():
        amount = pricing[part]
        if amount == "0":
            continue
        money = f"${amount}" if currency == "usd" else f"{amount} {currency.upper()}"
        lines.append(f"{money} {unit}")
    return lines
