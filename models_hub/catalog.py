"""Reading the catalog: search and filters, one listing by slug, its pricing.

Pages and the API both come through here, so they always agree on what an org may see:
another org's private listing is "not found", exactly like a slug that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Case, IntegerField, Q, Value, When

from models_hub.models import ModelListing, ModelListingQuerySet
from portal.errors import NotFound
from portal.models import Organization

MAX_QUERY_TERMS = 8
# Builtin models (echo) have no weights: they prove a token works and nothing else, so
# they never lead the catalog or a first call.
DIAGNOSTIC_PREFIX = "builtin:"


def diagnostic_last() -> Case:
    """An ordering key: 0 for real models, 1 for diagnostic ones."""
    return Case(
        When(source__startswith=DIAGNOSTIC_PREFIX, then=Value(1)),
        default=Value(0),
        output_field=IntegerField(),
    )


def search_catalog(
    org: Organization | None, *, q: str = "", task: str = "", tag: str = ""
) -> ModelListingQuerySet:
    """Published listings the org may see; every search term must match somewhere."""
    listings = ModelListing.objects.catalog(org)
    if task:
        listings = listings.filter(task=task)
    if tag:
        listings = listings.filter(tags__slug=tag)
    for term in q.split()[:MAX_QUERY_TERMS]:
        listings = listings.filter(
            Q(name__icontains=term)
            | Q(slug__icontains=term)
            | Q(summary__icontains=term)
            | Q(description__icontains=term)
            | Q(tags__name__icontains=term)
        )
    return (
        listings.select_related("org")
        .prefetch_related("tags")
        .annotate(diagnostic=diagnostic_last())
        .order_by("diagnostic", "name", "pk")
        .distinct()
    )


def featured(org: Organization | None, limit: int = 3) -> list[ModelListing]:
    """The models a first visit leads with (landing page, dashboard): real models first,
    the most run in the last 30 days first, then by name; never a diagnostic one while a
    real one is listed."""
    from inference.catalog_stats import NO_STATS, catalog_stats

    listings = list(
        ModelListing.objects.catalog(org)
        .select_related("org")
        .annotate(diagnostic=diagnostic_last())
        .order_by("diagnostic", "name", "pk")
    )
    stats = catalog_stats() or {}  # none cached yet: by name
    # A stable sort keeps real-before-diagnostic and the name order among equal counts.
    listings.sort(key=lambda listing: (listing.diagnostic, -stats.get(listing.pk, NO_STATS).runs))
    return listings[:limit]


def get_listing(org: Organization | None, slug: str) -> ModelListing:
    listing = (
        ModelListing.objects.viewable_by(org)
        .select_related("org")
        .prefetch_related("tags")
        .filter(slug=slug)
        .first()
    )
    if listing is None:
        raise NotFound(f"Model {slug!r} not found.", code="model_not_found")
    return listing


def get_listing_for_review(slug: str) -> ModelListing:
    """Any listing by slug, whatever its status or org: staff previewing a submission
    (the caller checks that the viewer is staff)."""
    listing = (
        ModelListing.objects.select_related("org").prefetch_related("tags").filter(slug=slug)
    ).first()
    if listing is None:
        raise NotFound(f"Model {slug!r} not found.", code="model_not_found")
    return listing


def pricing_for(listing: ModelListing) -> dict[str, Any]:
    """The listing's price in force now and the public plans that include it (billing
    decides)."""
    return pricing_for_many([listing])[listing.pk]


def pricing_for_many(listings: Iterable[ModelListing]) -> dict[int, dict[str, Any]]:
    """`pricing_for` of a page of listings in a fixed number of queries, by listing id."""
    from billing.pricing import catalog_pricing

    return catalog_pricing(listings)


def price_lines(pricing: dict[str, Any]) -> list[str]:
    from billing.pricing import price_lines as lines

    return lines(pricing)
