"""Public per-model figures for the catalog's cards: runs in the last 30 days and the
median run time, as Replicate shows run counts on its model cards.

They are aggregates over every org's predictions: a count and a median per model, never
a row, an org or an input. A Celery beat task (`inference.tasks.refresh_catalog_stats`)
computes them for every listing with one aggregate query and stores them in the cache;
pages only read the cache, so no page view ever scans the month's predictions, and a
busy or absent worker leaves the catalog working (with older figures, or none).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Aggregate, Case, Count, F, FloatField, When
from django.utils import timezone

from inference.models import Prediction, Status

WINDOW = timedelta(days=30)
CACHE_KEY = "catalog:stats:v1"


def cache_seconds() -> int:
    """A few refresh intervals: one late or lost run (workers busy with predictions) keeps
    the last figures; once beat has been gone that long they are dropped as too old."""
    return settings.CATALOG_STATS_INTERVAL_SECONDS * 5


@dataclass(frozen=True)
class ListingStats:
    runs: int = 0
    # Median model run time (predict_time) of the window's successful runs; None without one.
    median_seconds: float | None = None

    @property
    def median_ms(self) -> int | None:
        return None if self.median_seconds is None else round(self.median_seconds * 1000)


NO_STATS = ListingStats()


class Median(Aggregate):
    """PostgreSQL's exact median; NULLs (runs that did not succeed) are ignored."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def _succeeded_time() -> Case:
    return Case(When(status=Status.SUCCEEDED, then=F("predict_time")), output_field=FloatField())


def _recent():
    return Prediction.objects.filter(created_at__gte=timezone.now() - WINDOW).order_by()


def _compute_postgresql() -> dict[int, ListingStats]:
    rows = (
        _recent()
        .values("model_id")
        .annotate(runs=Count("id"), median=Median(_succeeded_time()))
        .values_list("model_id", "runs", "median")
    )
    return {model_id: ListingStats(runs, median) for model_id, runs, median in rows}


def _compute_portable() -> dict[int, ListingStats]:
    """SQLite (the embedded default) has no ordered-set aggregates: one query of
    (model, status, run time) and the median in Python."""
    runs: dict[int, int] = defaultdict(int)
    times: dict[int, list[float]] = defaultdict(list)
    for model_id, status, seconds in _recent().values_list("model_id", "status", "predict_time"):
        runs[model_id] += 1
        if status == Status.SUCCEEDED and seconds is not None:
            times[model_id].append(seconds)
    return {
        model_id: ListingStats(
            count, statistics.median(times[model_id]) if times[model_id] else None
        )
        for model_id, count in runs.items()
    }


def compute() -> dict[int, ListingStats]:
    if connection.vendor == "postgresql":
        return _compute_postgresql()
    return _compute_portable()


def refresh() -> dict[int, ListingStats]:
    """The beat task's work: computes every listing's figures and caches them."""
    found = compute()
    # Plain tuples in the cache: no pickled class to break across deploys.
    cache.set(
        CACHE_KEY, {pk: (s.runs, s.median_seconds) for pk, s in found.items()}, cache_seconds()
    )
    return found


def catalog_stats() -> dict[int, ListingStats] | None:
    """Every listing's figures by listing id (a listing without runs is absent: use
    `.get(pk, NO_STATS)`), or None while the cache holds none (before the task's first
    run): pages then show no figures rather than query predictions."""
    cached = cache.get(CACHE_KEY)
    if cached is None:
        return None
    return {pk: ListingStats(runs, median) for pk, (runs, median) in cached.items()}
