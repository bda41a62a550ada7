"""The publisher page: the org's Stripe Connect status, the way into Stripe's hosted
onboarding for owners, and (for owners and admins) its earnings, payouts and ledger, with
the ledger as CSV. Views stay thin: `billing.publishers` decides and enforces roles."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from billing import payouts, publishers, royalties, stripe_client
from billing.models import Payout, RoyaltyEntry
from billing.prices import decimal_string
from billing.publisher_ledger import ledger_rows, parse_range, row_payload
from billing.views import redirect_to_service
from portal.auth import PUBLISHER_ROLE
from portal.errors import InvalidInput
from portal.models import Organization, Role
from portal.spreadsheets import formula_safe
from portal.views import org_member_required

LATEST_ROWS = 50
CSV_COLUMNS = (
    "created_at", "object", "kind_or_status", "model", "customer_charge", "publisher_share",
    "platform_fee", "fee_percent", "amount", "period", "currency", "stripe_transfer_id",
)  # fmt: skip
# Free text in the ledger (slugs, Stripe ids); amounts stay as they are, a leading minus
# included, so the columns still add up.
CSV_TEXT_COLUMNS = frozenset({"model", "stripe_transfer_id"})


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
