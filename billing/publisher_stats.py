"""A publisher's analytics (`GET /api/v1/publisher/stats`): per listing of the org, by UTC
day: calls, unique customer orgs, tokens, revenue and the publisher's share (from the
royalty ledger), error rate, and p50/p95 latency (queue plus run time of the day's
finished calls)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import RoyaltyEntry
from billing.prices import decimal_string
from billing.usage import check_range, parse_moment
from inference.models import TERMINAL_STATUSES, Prediction, Status
from models_hub.models import ModelListing
from portal.models import Organization

DEFAULT_DAYS = 30
# Latency percentiles are computed from each finished call's time: the range is bounded.
MAX_RANGE = timedelta(days=93)
ZERO = Decimal(0)

Key = tuple[int, date]


def parse_range(params: dict[str, Any]) -> tuple[datetime, datetime]:
    """`start` / `end` (dates or ISO 8601); by default the last 30 UTC days, today included."""
    tomorrow = datetime.combine(timezone.now().astimezone(UTC).date(), time.min, tzinfo=UTC)
    tomorrow += timedelta(days=1)
    end = parse_moment(str(params["end"]), "end", end=True) if params.get("end") else tomorrow
    start = (
        parse_moment(str(params["start"]), "start", end=False)
        if params.get("start")
        else end - timedelta(days=DEFAULT_DAYS)
    )
    check_range(start, end, MAX_RANGE)
    return start, end


def _calls(org: Organization, start: datetime, end: datetime) -> dict[Key, dict]:
    rows = (
        Prediction.objects.filter(model__org=org, created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("model_id", "day")
        .annotate(
            calls=Count("id"),
            unique_orgs=Count("org", distinct=True),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            failed=Count("id", filter=Q(status=Status.FAILED)),
            finished=Count("id", filter=Q(status__in=TERMINAL_STATUSES)),
        )
    )
    return {(row["model_id"], row["day"]): row for row in rows}


def _latencies(org: Organization, start: datetime, end: datetime) -> dict[Key, list[float]]:
    finished = Prediction.objects.filter(
        model__org=org, created_at__gte=start, created_at__lt=end, predict_time__isnull=False
    ).annotate(day=TruncDate("created_at", tzinfo=UTC))
    found: dict[Key, list[float]] = defaultdict(list)
    for model_id, day, queued, ran in finished.values_list(
        "model_id", "day", "queue_time", "predict_time"
    ):
        found[(model_id, day)].append(((queued or 0.0) + ran) * 1000)
    return found


def _revenue(org: Organization, start: datetime, end: datetime) -> dict[Key, dict]:
    rows = (
        RoyaltyEntry.objects.filter(publisher=org, created_at__gte=start, created_at__lt=end)
        .exclude(listing=None)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("listing_id", "day")
        .annotate(revenue=Sum("customer_charge"), share=Sum("publisher_share"))
    )
    return {(row["listing_id"], row["day"]): row for row in rows}


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return round(ordered[rank - 1], 1)


def _day(day: date, calls: dict, latencies: list[float], money: dict) -> dict[str, Any]:
    finished = calls.get("finished", 0)
    return {
        "date": day.isoformat(),
        "calls": calls.get("calls", 0),
        "unique_orgs": calls.get("unique_orgs", 0),
        "input_tokens": calls.get("input_tokens") or 0,
        "output_tokens": calls.get("output_tokens") or 0,
        "revenue": decimal_string(money.get("revenue") or ZERO),
        "publisher_share": decimal_string(money.get("share") or ZERO),
        "error_rate": round(calls.get("failed", 0) / finished, 4) if finished else None,
        "latency_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95)},
    }


def stats(org: Organization, start: datetime, end: datetime) -> dict[str, Any]:
    calls = _calls(org, start, end)
    latencies = _latencies(org, start, end)
    revenue = _revenue(org, start, end)
    listings = []
    for listing in ModelListing.objects.filter(org=org).order_by("slug"):
        days = sorted({day for (pk, day) in (*calls, *revenue) if pk == listing.pk})
        listings.append(
            {
                "model": listing.slug,
                "name": listing.name,
                "days": [
                    _day(
                        day,
                        calls.get((listing.pk, day), {}),
                        latencies.get((listing.pk, day), []),
                        revenue.get((listing.pk, day), {}),
                    )
                    for day in days
                ],
            }
        )
    return {"object": "publisher_stats", "start": start, "end": end, "listings": listings}
