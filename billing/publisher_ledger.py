"""A publisher's side of the money, as the publisher sees it (`GET /api/v1/publisher/ledger`):
its royalty entries and its payouts' transfers in one list, newest first."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import CharField, DateField, DecimalField, F, QuerySet, Value

from billing.models import Payout, RoyaltyEntry
from billing.prices import decimal_string
from billing.usage import check_range, parse_moment
from portal.models import Organization

# The columns both kinds of row share, in order (a UNION needs one shape).
COLUMNS = (
    "obj", "pk", "created_at", "state", "model", "charge", "share", "fee", "percent",
    "currency", "period", "transfer_id",
)  # fmt: skip


def _none(field: type) -> Value:
    return Value(None, output_field=field())


def _money_none() -> Value:
    return Value(None, output_field=DecimalField(max_digits=16, decimal_places=6))


def parse_range(params: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """Optional `start` / `end` (dates or ISO 8601); without them, the whole ledger."""
    start = parse_moment(str(params["start"]), "start", end=False) if params.get("start") else None
    end = parse_moment(str(params["end"]), "end", end=True) if params.get("end") else None
    if start and end:
        check_range(start, end)
    return start, end


def _in_range(rows: QuerySet, start: datetime | None, end: datetime | None) -> QuerySet:
    if start is not None:
        rows = rows.filter(created_at__gte=start)
    if end is not None:
        rows = rows.filter(created_at__lt=end)
    return rows


def ledger_rows(org: Organization, start: datetime | None, end: datetime | None) -> QuerySet:
    entries = _in_range(RoyaltyEntry.objects.filter(publisher=org), start, end).annotate(
        obj=Value("royalty_entry", output_field=CharField()),
        state=F("kind"),
        model=F("listing__slug"),
        charge=F("customer_charge"),
        share=F("publisher_share"),
        fee=F("platform_fee"),
        percent=F("fee_percent"),
        period=_none(DateField),
        transfer_id=Value("", output_field=CharField()),
    )
    transfers = _in_range(Payout.objects.filter(publisher=org), start, end).annotate(
        obj=Value("transfer", output_field=CharField()),
        state=F("status"),
        model=_none(CharField),
        charge=_money_none(),
        share=F("amount"),
        fee=_money_none(),
        percent=_money_none(),
        period=F("period_start"),
        transfer_id=F("stripe_transfer_id"),
    )
    union = entries.values_list(*COLUMNS).union(transfers.values_list(*COLUMNS), all=True)
    return union.order_by("-created_at", "-pk")


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else decimal_string(value)


def row_payload(row: tuple) -> dict[str, Any]:
    data = dict(zip(COLUMNS, row, strict=True))
    common = {"object": data["obj"], "id": data["pk"], "created_at": data["created_at"]}
    if data["obj"] == "transfer":
        return {
            **common,
            "status": data["state"],
            "period": f"{data['period']:%Y-%m}",
            "amount": _amount(data["share"]),
            "currency": data["currency"],
            "stripe_transfer_id": data["transfer_id"] or None,
        }
    return {
        **common,
        "kind": data["state"],
        "model": data["model"],
        "customer_charge": _amount(data["charge"]),
        "publisher_share": _amount(data["share"]),
        "platform_fee": _amount(data["fee"]),
        "fee_percent": _amount(data["percent"]),
        "currency": data["currency"],
    }
