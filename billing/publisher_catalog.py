"""What the publisher's pages read (issue #13): each listing of the org with the price in
force, its scheduled changes and how many customer orgs those changes reach; the plans
it offers with their subscribers; and the daily series of `billing.publisher_stats` laid
out for charts and the CSV."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet

from billing import listing_subscriptions
from billing.models import ListingPlan, ListingPrice, ListingSubscription
from billing.plans import PAID_ACCESS
from billing.prices import prices_at
from inference.models import Prediction
from models_hub.models import ModelListing
from portal.models import Organization

# The customers a price change affects: the other orgs that called the listing this
# recently (the publisher's own org made the change).
AFFECTED_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class SubscriberReach:
    """When a price change reaches the listing's subscribers, who keep the price they
    bought until their first renewal at least the notice period after the change."""

    price: ListingPrice
    subscribers: int
    first: datetime
    last: datetime


@dataclass(frozen=True)
class ListingPrices:
    listing: ModelListing
    current: ListingPrice
    scheduled: list[ListingPrice]
    affected_orgs: int
    reach: list[SubscriberReach]


def _recent_calls(now: datetime) -> QuerySet[Prediction]:
    return Prediction.objects.filter(created_at__gte=now - AFFECTED_WINDOW).order_by()


def recent_callers(org: Organization, now: datetime) -> dict[int, int]:
    """Per listing of the org: the number of customer orgs that called it lately."""
    rows = (
        _recent_calls(now)
        .filter(model__org=org)
        .exclude(org=org)
        .values("model_id")
        .annotate(orgs=Count("org", distinct=True))
    )
    return {row["model_id"]: row["orgs"] for row in rows}


def recent_caller_orgs(listing: ModelListing, now: datetime) -> list[int]:
    """The ids of the customer orgs that called the listing lately."""
    calls = _recent_calls(now).filter(model=listing).exclude(org_id=listing.org_id)
    return list(calls.values_list("org_id", flat=True).distinct())


def _reach(
    price: ListingPrice, subscriptions: list[ListingSubscription], now: datetime
) -> SubscriberReach | None:
    dates = [
        max(
            price.effective_from, listing_subscriptions.takes_effect_for(sub, price.created_at, now)
        )
        for sub in subscriptions
    ]
    pending = [when for when in dates if when > now]
    if not pending:
        return None
    return SubscriberReach(price, len(pending), min(pending), max(pending))


def subscriber_reach(org: Organization, now: datetime) -> dict[int, list[SubscriberReach]]:
    """Per listing of the org: each price change that has yet to reach some of its paying
    subscribers, with how many and between which dates."""
    subscriptions: dict[int, list[ListingSubscription]] = {}
    paying = ListingSubscription.objects.filter(listing__org=org, status__in=PAID_ACCESS)
    for sub in paying.select_related("plan"):
        subscriptions.setdefault(sub.listing_id, []).append(sub)
    found: dict[int, list[SubscriberReach]] = {}
    changes = ListingPrice.objects.filter(listing_id__in=list(subscriptions))
    for price in changes.order_by("effective_from", "pk"):
        reach = _reach(price, subscriptions[price.listing_id], now)
        if reach is not None:
            found.setdefault(price.listing_id, []).append(reach)
    return found


def listing_prices(org: Organization, now: datetime) -> list[ListingPrices]:
    """Every listing of the org (any status), with its price now, the changes to come and
    when they reach its subscribers."""
    listings = list(ModelListing.objects.filter(org=org).order_by("slug"))
    current = prices_at(listings, now)
    scheduled: dict[int, list[ListingPrice]] = {listing.pk: [] for listing in listings}
    upcoming = ListingPrice.objects.filter(listing__org=org, effective_from__gt=now)
    for row in upcoming.order_by("effective_from", "pk"):
        scheduled[row.listing_id].append(row)
    callers = recent_callers(org, now)
    reach = subscriber_reach(org, now)
    return [
        ListingPrices(
            listing,
            current[listing.pk],
            scheduled[listing.pk],
            callers.get(listing.pk, 0),
            reach.get(listing.pk, []),
        )
        for listing in listings
    ]


def plans_by_listing(org: Organization) -> dict[int, list[ListingPlan]]:
    """Every plan of the org's listings, retired ones included, each with `subscribers`:
    the orgs whose subscription to it is paid or trialing now."""
    paying = Q(subscriptions__status__in=PAID_ACCESS)
    rows = ListingPlan.objects.filter(listing__org=org).annotate(
        subscribers=Count("subscriptions", filter=paying)
    )
    found: dict[int, list[ListingPlan]] = {}
    for plan in rows.order_by("-is_active", "monthly_price", "pk"):
        found.setdefault(plan.listing_id, []).append(plan)
    return found


def days_between(start: datetime, end: datetime) -> Iterator[date]:
    """Every UTC day of `start`..`end` (end exclusive), so a chart shows idle days as 0."""
    day = start.astimezone(UTC).date()
    last = (end - timedelta(microseconds=1)).astimezone(UTC).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


def stats_rows(stats: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(listing, day) pairs of a `publisher_stats.stats` body, listing by listing."""
    for listing in stats["listings"]:
        for day in listing["days"]:
            yield listing, day
