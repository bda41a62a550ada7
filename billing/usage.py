"""Reading the usage ledger: totals by model, day or token over a time range.

The API, the usage page and the CSV export all come through here, always scoped to one
org: another org's usage is never in a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from billing import plans
from billing.models import CallCost
from portal.errors import InvalidInput
from portal.models import Organization

GROUPS = ("model", "day", "token")
MAX_RANGE = timedelta(days=400)
# Usage exists only since the portal does; years beyond these are typing mistakes or probes.
FIRST_YEAR, LAST_YEAR = 1970, 9998
SUMS = ("requests", "input_tokens", "output_tokens", "cost")


@dataclass(frozen=True)
class UsageRange:
    start: datetime
    end: datetime
    group_by: str


def parse_moment(raw: str, param: str, *, end: bool) -> datetime:
    """A date (a whole UTC day; an end date includes that day) or an ISO 8601 datetime."""
    try:
        day = parse_date(raw) if len(raw) == 10 else None
        moment = None if day else parse_datetime(raw.replace("Z", "+00:00"))
    except ValueError:
        day = moment = None
    if day is None and moment is None:
        raise InvalidInput(
            f"{param} must be a date (YYYY-MM-DD) or an ISO 8601 date-time.", param=param
        )
    _check_year(day or moment, param)
    if day is not None:
        moment = datetime.combine(day, time.min, tzinfo=UTC)
        return moment + timedelta(days=1) if end else moment
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


def _check_year(value: date, param: str) -> None:
    """Keeps the arithmetic on the range (the day after an end date, time-zone shifts, the
    chart's days) clear of the calendar's ends, where Python's dates overflow."""
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise InvalidInput(
            f"{param} must be between {FIRST_YEAR}-01-01 and {LAST_YEAR}-12-31.", param=param
        )


def parse_range(org: Organization, params: dict[str, Any]) -> UsageRange:
    """The query's range; by default the org's current billing period so far."""
    group_by = params.get("group_by") or "model"
    if group_by not in GROUPS:
        raise InvalidInput(f"group_by must be one of: {', '.join(GROUPS)}.", param="group_by")
    state = plans.plan_state(org)
    start = state.period_start
    end = state.period_end
    if params.get("start"):
        start = parse_moment(str(params["start"]), "start", end=False)
    if params.get("end"):
        end = parse_moment(str(params["end"]), "end", end=True)
    check_range(start, end)
    return UsageRange(start, end, group_by)


def check_range(start: datetime, end: datetime, longest: timedelta = MAX_RANGE) -> None:
    """400 unless `end` comes after `start` and the range spans at most `longest`."""
    if end <= start:
        raise InvalidInput("end must be after start.", param="end")
    if end - start > longest:
        raise InvalidInput(f"The range may span at most {longest.days} days.", param="start")


def _ledger(org: Organization, usage_range: UsageRange):
    # The settlement entries (receipts): one per finished call, with what it cost.
    return CallCost.objects.filter(
        org=org, created_at__gte=usage_range.start, created_at__lt=usage_range.end
    )


def _sums() -> dict[str, Any]:
    totals = {name: Coalesce(Sum(name), 0) for name in SUMS[:3]}
    totals["cost"] = Coalesce(Sum("amount"), Decimal(0))
    totals["predictions"] = Count("id")
    return totals


def _row(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "predictions": values["predictions"],
        "requests": values["requests"],
        "input_tokens": values["input_tokens"],
        "output_tokens": values["output_tokens"],
        "total_tokens": values["input_tokens"] + values["output_tokens"],
        "cost": f"{Decimal(values['cost']).quantize(Decimal('0.000001'))}",
    }


def _grouped(org: Organization, usage_range: UsageRange) -> list[dict[str, Any]]:
    ledger = _ledger(org, usage_range)
    if usage_range.group_by == "model":
        rows = ledger.values("model__slug").annotate(**_sums()).order_by("model__slug")
        return [{"model": r["model__slug"], **_row(r)} for r in rows]
    if usage_range.group_by == "day":
        rows = (
            ledger.annotate(day=TruncDate("created_at", tzinfo=UTC))
            .values("day")
            .annotate(**_sums())
            .order_by("day")
        )
        return [{"day": r["day"].isoformat(), **_row(r)} for r in rows]
    token = {"prefix": F("prediction__token__prefix"), "name": F("prediction__token__name")}
    rows = ledger.values(**token).annotate(**_sums()).order_by("name")
    return [
        {
            # Browser (session) use has no token.
            "token": {"prefix": r["prefix"], "name": r["name"]} if r["prefix"] else None,
            **_row(r),
        }
        for r in rows
    ]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def usage_report(org: Organization, usage_range: UsageRange) -> dict[str, Any]:
    total = _ledger(org, usage_range).aggregate(**_sums())
    return {
        "object": "usage",
        "start": _iso(usage_range.start),
        "end": _iso(usage_range.end),
        "group_by": usage_range.group_by,
        "data": _grouped(org, usage_range),
        "total": _row(total),
    }


def daily_series(org: Organization, usage_range: UsageRange) -> list[dict[str, Any]]:
    """One row per day of the range, zero-filled, for the chart."""
    by_day = {
        row["day"]: row
        for row in _grouped(org, UsageRange(usage_range.start, usage_range.end, "day"))
    }
    day: date = usage_range.start.date()
    last = (usage_range.end - timedelta(microseconds=1)).date()
    series = []
    while day <= last:
        empty = {"day": day.isoformat(), **_row(dict.fromkeys((*SUMS, "predictions"), 0))}
        series.append(by_day.get(day.isoformat(), empty))
        day += timedelta(days=1)
    return series
