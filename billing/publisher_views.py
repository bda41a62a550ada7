"""The publisher pages: the org's Stripe Connect status, the way into Stripe's hosted
onboarding for owners, and (for owners and admins) its earnings, payouts and ledger, with
the ledger as CSV; its listings with their prices, where owners and admins schedule price
changes and offer subscription plans; and its analytics with charts and CSV. Views stay
thin: `billing.publishers`, `billing.prices` and `billing.listing_subscriptions` decide
and enforce roles."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from billing import (
    charts,
    listing_subscriptions,
    payouts,
    prices,
    publisher_catalog,
    publisher_stats,
    publishers,
    royalties,
    stripe_client,
)
from billing.forms import ListingPlanForm, PublisherPriceForm
from billing.models import ListingPlan, ListingPrice, Payout, RoyaltyEntry
from billing.prices import decimal_string
from billing.publisher_ledger import ledger_rows, parse_range, row_payload
from billing.views import redirect_to_service
from models_hub.models import ModelListing
from portal.auth import PUBLISHER_ROLE
from portal.errors import InvalidInput, NotAllowed, NotFound, PortalError
from portal.models import Organization, Role
from portal.spreadsheets import formula_safe
from portal.views import org_member_required, run_service

LATEST_ROWS = 50
CSV_COLUMNS = (
    "created_at", "object", "kind_or_status", "model", "customer_charge", "publisher_share",
    "platform_fee", "fee_percent", "amount", "period", "currency", "stripe_transfer_id",
)  # fmt: skip
# Free text in the ledger (slugs, Stripe ids); amounts stay as they are, a leading minus
# included, so the columns still add up.
CSV_TEXT_COLUMNS = frozenset({"model", "stripe_transfer_id"})
T = TypeVar("T")


@org_member_required()
@require_GET
def publisher_page(request: HttpRequest) -> HttpResponse:
    account = publishers.account_of(request.org)
    # Revenue is for owners and admins, the same rule as the ledger API's scope.
    sees_revenue = request.membership.has_role(PUBLISHER_ROLE)
    context = {
        "account": account,
        "state": publishers.onboarding_state(account),
        "is_owner": request.membership.has_role(Role.OWNER),
        "payouts_configured": stripe_client.is_configured(),
        "back_from_stripe": request.GET.get("onboarding") == "done",
        "sees_revenue": sees_revenue,
    }
    if sees_revenue:
        context.update(_earnings(request.org, timezone.now()))
    return render(request, "billing/publisher.html", context)


def _earnings(org: Organization, now: datetime) -> dict[str, Any]:
    this_month = RoyaltyEntry.objects.filter(
        publisher=org, created_at__gte=payouts.month_start(now.astimezone(UTC))
    )
    earned = this_month.aggregate(total=Sum("publisher_share"))["total"] or payouts.ZERO
    return {
        "earned_this_month": decimal_string(earned),
        "balance": decimal_string(payouts.balance(org.pk, now)),
        "payout_minimum": decimal_string(settings.PAYOUT_MINIMUM),
        "payout_hold_days": settings.PAYOUT_HOLD_DAYS,
        "fee_percent": decimal_string(royalties.fee_percent(org.pk)),
        "currency": settings.PORTAL_CURRENCY,
        "payouts": [_payout_row(payout) for payout in Payout.objects.filter(publisher=org)],
        "ledger": [row_payload(row) for row in ledger_rows(org, None, None)[:LATEST_ROWS]],
    }


def _payout_row(payout: Payout) -> dict[str, str]:
    # Stripe's error text is for operators (admin); the publisher learns only the outcome.
    failed = payout.status == Payout.Status.FAILED
    return {
        "month": f"{payout.period_start:%Y-%m}",
        "amount": decimal_string(payout.amount),
        "currency": payout.currency,
        "status": "failed, will be retried" if failed else payout.status,
        "stripe_transfer_id": payout.stripe_transfer_id,
    }


@org_member_required(PUBLISHER_ROLE)
@require_GET
def ledger_csv(request: HttpRequest) -> HttpResponse:
    """Every ledger row in `start`..`end` (or all), one CSV row each, amounts exact."""
    try:
        start, end = parse_range(request.GET)
    except InvalidInput as exc:
        return HttpResponse(exc.message, status=400, content_type="text/plain")
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="publisher-ledger.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for row in ledger_rows(request.org, start, end).iterator():
        writer.writerow(_csv_row(row_payload(row)))
    return response


def _csv_row(payload: dict[str, Any]) -> list[str]:
    cells = {
        **payload,
        "created_at": payload["created_at"].astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "kind_or_status": payload.get("kind") or payload["status"],
    }
    return [_csv_cell(column, cells.get(column)) for column in CSV_COLUMNS]


def _csv_cell(column: str, value: object) -> str:
    text = "" if value is None else str(value)
    return formula_safe(text) if column in CSV_TEXT_COLUMNS else text


def _to_onboarding(request: HttpRequest) -> HttpResponse:
    """Redirects to a fresh onboarding link; 404/403 propagate, other errors are shown."""
    page = reverse("publisher")
    refresh_url = request.build_absolute_uri(reverse("publisher_onboarding_refresh"))
    return_url = request.build_absolute_uri(page) + "?onboarding=done"
    start = partial(publishers.start_onboarding, request.org, request.user, refresh_url, return_url)
    return redirect_to_service(request, start, page)


@org_member_required()
@require_POST
def onboarding(request: HttpRequest) -> HttpResponse:
    return _to_onboarding(request)


@org_member_required()
@require_GET
def onboarding_refresh(request: HttpRequest) -> HttpResponse:
    """Where Stripe sends the browser when a link expired or was used: a new link."""
    return _to_onboarding(request)


# --- Listings and prices ----------------------------------------------------------------


@org_member_required()
@require_GET
def listings_page(request: HttpRequest) -> HttpResponse:
    return _render_listings(request)


def _own_listing(request: HttpRequest, slug: str) -> ModelListing:
    # Another org's listing is looked up exactly like a missing one: both 404.
    listing = ModelListing.objects.filter(org=request.org, slug=slug).first()
    if listing is None:
        raise Http404("Model not found.")
    return listing


def _save_with(form: PublisherPriceForm | ListingPlanForm, action: Callable[[], T]) -> T | None:
    """Runs the service; 404 and 403 propagate, its other errors become the form's (on
    the field they name). None when it failed."""
    try:
        return action()
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        field = exc.param if exc.param in form.fields else None
        form.add_error(field, exc.message)
        return None


@org_member_required(PUBLISHER_ROLE)
@require_POST
def schedule_price(request: HttpRequest, slug: str) -> HttpResponse:
    listing = _own_listing(request, slug)
    form = PublisherPriceForm(request.POST, auto_id=_form_id(slug))
    if form.is_valid():
        schedule = partial(prices.schedule_publisher_price, listing, request.user)
        price = _save_with(form, lambda: schedule(**form.cleaned_data))
        if price is not None:
            when = f"{price.effective_from.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
            messages.success(request, f"New price for {listing.name} scheduled from {when}.")
            return redirect("publisher_listings")
    return _render_listings(request, failed=(slug, form), status=400)


@org_member_required(PUBLISHER_ROLE)
@require_POST
def add_plan(request: HttpRequest, slug: str) -> HttpResponse:
    listing = _own_listing(request, slug)
    form = ListingPlanForm(request.POST, auto_id=_plan_form_id(slug))
    if form.is_valid():
        create = partial(listing_subscriptions.create_plan, listing, request.user)
        plan = _save_with(form, lambda: create(**form.cleaned_data))
        if plan is not None:
            messages.success(request, f"{listing.name} now offers the {plan.name} plan.")
            return redirect("publisher_listings")
    return _render_listings(request, failed_plan=(slug, form), status=400)


@org_member_required(PUBLISHER_ROLE)
@require_POST
def retire_plan(request: HttpRequest, slug: str, plan_id: int) -> HttpResponse:
    """Retiring twice is harmless: the service leaves a retired plan as it is."""
    listing = _own_listing(request, slug)
    retire = partial(listing_subscriptions.retire_plan, plan_id, listing, request.user)
    done = "The plan is retired: it takes no new subscribers, current ones keep it."
    if run_service(request, retire, done):
        return redirect("publisher_listings")
    return _render_listings(request, status=400)


def _form_id(slug: str) -> str:
    # One form per listing on the page: field ids must not collide.
    return f"id_{slug}_%s"


def _plan_form_id(slug: str) -> str:
    return f"id_{slug}_plan_%s"


def _new_price_form(item: publisher_catalog.ListingPrices, now: datetime) -> PublisherPriceForm:
    """Prefilled with the latest price (scheduled or current) and the earliest whole hour
    the notice allows."""
    latest = item.scheduled[-1] if item.scheduled else item.current
    earliest = (now + prices.publisher_notice()).astimezone(UTC)
    earliest = earliest.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    initial = {part: decimal_string(getattr(latest, part)) for part in prices.PARTS}
    return PublisherPriceForm(
        initial={**initial, "effective_from": earliest}, auto_id=_form_id(item.listing.slug)
    )


def _price_cells(price: ListingPrice) -> dict[str, Any]:
    # Unsaved: the listing never had a price, and is free.
    cells = {"effective_from": price.effective_from if price.pk else None}
    return {**cells, **{part: decimal_string(getattr(price, part)) for part in prices.PARTS}}


def _plan_cells(plan: ListingPlan) -> dict[str, Any]:
    return {
        "pk": plan.pk,
        "name": plan.name,
        "monthly_price": decimal_string(plan.monthly_price),
        "included_usage": decimal_string(plan.included_usage),
        "overage_percent": decimal_string(plan.overage_percent),
        "currency": plan.currency,
        "trial_days": plan.trial_days,
        "is_active": plan.is_active,
        "subscribers": plan.subscribers,
    }


def _render_listings(
    request: HttpRequest,
    failed: tuple[str, PublisherPriceForm] | None = None,
    failed_plan: tuple[str, ListingPlanForm] | None = None,
    status: int = 200,
) -> HttpResponse:
    now = timezone.now()
    can_edit = request.membership.has_role(PUBLISHER_ROLE)
    plans = publisher_catalog.plans_by_listing(request.org)
    rows = []
    for item in publisher_catalog.listing_prices(request.org, now):
        slug = item.listing.slug
        form = plan_form = None
        if failed is not None and failed[0] == slug:
            form = failed[1]
        elif can_edit:
            form = _new_price_form(item, now)
        if failed_plan is not None and failed_plan[0] == slug:
            plan_form = failed_plan[1]
        elif can_edit:
            plan_form = ListingPlanForm(initial={"trial_days": 0}, auto_id=_plan_form_id(slug))
        rows.append(
            {
                "item": item,
                "current": _price_cells(item.current),
                "scheduled": [_price_cells(price) for price in item.scheduled],
                "form": form,
                "plans": [_plan_cells(plan) for plan in plans.get(item.listing.pk, [])],
                "plan_form": plan_form,
            }
        )
    context = {
        "rows": rows,
        "can_edit": can_edit,
        "notice_hours": settings.PRICE_CHANGE_NOTICE_HOURS,
        "lock_days": settings.LISTING_PRICE_LOCK_NOTICE_DAYS,
        "affected_days": publisher_catalog.AFFECTED_WINDOW.days,
        "currency": settings.PORTAL_CURRENCY,
    }
    return render(request, "billing/publisher_listings.html", context, status=status)


# --- Analytics --------------------------------------------------------------------------

ANALYTICS_COLUMNS = ("date", "model", "calls", "unique_orgs", "input_tokens", "output_tokens")
REVENUE_COLUMNS = ("revenue", "publisher_share")
QUALITY_COLUMNS = ("error_rate", "p50_ms", "p95_ms")


@org_member_required()
@require_GET
def analytics_page(request: HttpRequest) -> HttpResponse:
    sees_revenue = request.membership.has_role(PUBLISHER_ROLE)
    try:
        start, end = publisher_stats.parse_range(request.GET)
    except InvalidInput as exc:
        context = {"error": exc.message, **_range_inputs(request, None)}
        return render(request, "billing/publisher_analytics.html", context, status=400)
    body = publisher_stats.stats(request.org, start, end)
    days = list(publisher_catalog.days_between(start, end))
    context = {
        "listings": [_analytics_listing(item, days, sees_revenue) for item in body["listings"]],
        "sees_revenue": sees_revenue,
        "currency": settings.PORTAL_CURRENCY,
        **_range_inputs(request, (start, end)),
    }
    return render(request, "billing/publisher_analytics.html", context)


def _range_inputs(request: HttpRequest, period: tuple[datetime, datetime] | None) -> dict[str, str]:
    """The date inputs' values: as typed, else the range shown (its end is exclusive)."""
    shown = {}
    if period is not None:
        shown = {
            "start": f"{period[0].astimezone(UTC):%Y-%m-%d}",
            "end": f"{(period[1] - timedelta(microseconds=1)).astimezone(UTC):%Y-%m-%d}",
        }
    return {
        "start": request.GET.get("start") or shown.get("start", ""),
        "end": request.GET.get("end") or shown.get("end", ""),
    }


def _analytics_listing(
    item: dict[str, Any], days: list[date], sees_revenue: bool
) -> dict[str, Any]:
    by_day = {day["date"]: day for day in item["days"]}

    def series(title: str, key: str) -> tuple[str, str]:
        bars = []
        for day in days:
            value = by_day.get(day.isoformat(), {}).get(key, 0)
            bars.append(charts.Bar(day.isoformat(), float(value), str(value)))
        return title, charts.column_chart(f"{item['name']}: {title.lower()}", bars)

    shown = [series("Calls per day", "calls")]
    if sees_revenue:
        shown.append(series("Revenue per day", "revenue"))
    # Revenue leaves the server only for owners and admins.
    rows = item["days"] if sees_revenue else [_without_revenue(day) for day in item["days"]]
    return {"model": item["model"], "name": item["name"], "days": rows, "charts": shown}


def _without_revenue(day: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in day.items() if key not in REVENUE_COLUMNS}


@org_member_required()
@require_GET
def analytics_csv(request: HttpRequest) -> HttpResponse:
    """The stats API's figures, one row per listing and day; the money columns for owners
    and admins only."""
    try:
        start, end = publisher_stats.parse_range(request.GET)
    except InvalidInput as exc:
        return HttpResponse(exc.message, status=400, content_type="text/plain")
    sees_revenue = request.membership.has_role(PUBLISHER_ROLE)
    columns = (*ANALYTICS_COLUMNS, *(REVENUE_COLUMNS if sees_revenue else ()), *QUALITY_COLUMNS)
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="publisher-analytics.csv"'
    writer = csv.writer(response)
    writer.writerow(columns)
    body = publisher_stats.stats(request.org, start, end)
    for listing, day in publisher_catalog.stats_rows(body):
        latency = day["latency_ms"]
        cells = {
            **day,
            "model": formula_safe(listing["model"]),
            "p50_ms": latency["p50"],
            "p95_ms": latency["p95"],
        }
        writer.writerow(["" if cells[name] is None else str(cells[name]) for name in columns])
    return response
