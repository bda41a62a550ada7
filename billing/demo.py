"""The demo plans: Free (personal workspaces), Pro and Team. Safe to load repeatedly."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from billing import prices
from billing.models import ListingPrice, Plan
from models_hub.models import ModelListing, Task

DEMO_MODEL_SLUGS = [
    "smollm2-135m-instruct",
    "all-minilm-l6-v2",
    "minilm-zero-shot-classifier",
    "rapidocr-pp-ocrv4",
    "mtcnn-face-detection",
    "echo",
]

# Listing prices in the portal's currency; echo (a diagnostic model) stays free.
DEMO_PRICES: dict[str, dict[str, Decimal]] = {
    "smollm2-135m-instruct": {
        "input_per_million": Decimal("0.05"),
        "output_per_million": Decimal("0.10"),
    },
    "all-minilm-l6-v2": {"input_per_million": Decimal("0.01")},
    "minilm-zero-shot-classifier": {"per_request": Decimal("0.0001")},
    # Per image: each call reads one image.
    "rapidocr-pp-ocrv4": {"per_request": Decimal("0.001")},
    "mtcnn-face-detection": {"per_request": Decimal("0.0005")},
}

DEMO_PLANS: list[dict[str, Any]] = [
    {
        "slug": "free",
        "name": "Free",
        "description": "Try every demo model with a modest monthly allowance.",
        "price_cents": 0,
        "allowance": Decimal("1.00"),
        "rate_limit_per_minute": 20,
        "tasks": [],
        "overage_allowed": False,
        "is_default": True,
        "trial_days": 0,
        "sort_order": 0,
    },
    {
        "slug": "pro",
        "name": "Pro",
        "description": "For individuals building on the API, with pay-as-you-go overage.",
        "price_cents": 2000,
        "allowance": Decimal("20.00"),
        "rate_limit_per_minute": 300,
        "tasks": list(Task.values),
        "overage_allowed": True,
        "is_default": False,
        "trial_days": 14,
        "sort_order": 1,
    },
    {
        "slug": "team",
        "name": "Team",
        "description": "For teams in production: five times the allowance, with overage.",
        "price_cents": 10000,
        "allowance": Decimal("100.00"),
        "rate_limit_per_minute": 1200,
        "tasks": list(Task.values),
        "overage_allowed": True,
        "is_default": False,
        "trial_days": 14,
        "sort_order": 2,
    },
]


@transaction.atomic
def load_demo_plans() -> list[Plan]:
    """Creates or refreshes the demo plans; the free one unlocks the demo models."""
    demo_models = list(ModelListing.objects.filter(slug__in=DEMO_MODEL_SLUGS))
    loaded = []
    for entry in DEMO_PLANS:
        fields = {key: value for key, value in entry.items() if key != "slug"}
        plan, _ = Plan.objects.update_or_create(slug=entry["slug"], defaults=fields)
        if not plan.tasks:
            plan.included_models.set(demo_models)
        loaded.append(plan)
    return loaded


@transaction.atomic
def load_demo_prices() -> list[ListingPrice]:
    """Prices the demo models; a model already at its demo price gets no new row."""
    loaded = []
    for listing in ModelListing.objects.filter(slug__in=DEMO_PRICES):
        wanted = {part: DEMO_PRICES[listing.slug].get(part, Decimal(0)) for part in prices.PARTS}
        current = prices.price_at(listing)
        if any(getattr(current, part) != amount for part, amount in wanted.items()):
            current = prices.set_price(listing, **wanted)
        loaded.append(current)
    return loaded
