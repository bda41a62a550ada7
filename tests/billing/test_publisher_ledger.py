"""`GET /api/v1/publisher/ledger` (issue #13, API.md Publishers): the calling org's royalty
entries and payout transfers, newest first, paginated; for owners and admins in the
browser and tokens with the `publisher` scope; another org's ledger is never seen."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing.models import Payout, RoyaltyEntry
from portal.models import Role

pytestmark = pytest.mark.django_db

URL = "/api/v1/publisher/ledger"


def entry(org, share: str, when: datetime, reference: str, listing=None) -> RoyaltyEntry:
    share_d = Decimal(share)
    made = RoyaltyEntry.objects.create(
        publisher=org, listing=listing, kind="usage", reference=reference,
        customer_charge=share_d * 2, publisher_share=share_d, platform_fee=share_d,
        fee_percent=Decimal(50),
    )  # fmt: skip
    RoyaltyEntry.objects.filter(pk=made.pk).update(created_at=when)
    return made


@pytest.fixture
def ledger(org, echo):
    entry(org, "1.5", datetime(2026, 10, 1, tzinfo=UTC), "a", echo)
    entry(org, "0.000001", datetime(2026, 10, 20, tzinfo=UTC), "b")
    payout = Payout.objects.create(
        publisher=org, period_start=date(2026, 10, 1), amount=Decimal("26.50"),
        cutoff=datetime(2026, 11, 1, tzinfo=UTC), status="paid", stripe_transfer_id="tr_9",
    )  # fmt: skip
    Payout.objects.filter(pk=payout.pk).update(created_at=datetime(2026, 11, 8, tzinfo=UTC))
    return org


def test_entries_and_transfers_newest_first(ledger, client_for, owner):
    body = client_for(owner, ledger).get(URL).json()
    assert body["count"] == 3
    transfer, small, big = body["results"]
    assert transfer == {
        "object": "transfer", "id": transfer["id"], "created_at": "2026-11-08T00:00:00Z",
        "status": "paid", "period": "2026-10", "amount": "26.5", "currency": "usd",
        "stripe_transfer_id": "tr_9",
    }  # fmt: skip
    assert (small["object"], small["publisher_share"], small["model"]) == (
        "royalty_entry", "0.000001", None
    )  # fmt: skip
    assert (big["model"], big["customer_charge"], big["platform_fee"], big["fee_percent"]) == (
        "echo", "3", "1.5", "50"
    )  # fmt: skip


def test_a_range_and_pages(ledger, client_for, owner):
    api = client_for(owner, ledger)
    october = api.get(URL, {"start": "2026-10-01", "end": "2026-10-31"}).json()
    assert [row["object"] for row in october["results"]] == ["royalty_entry"] * 2
    page = api.get(URL, {"page_size": 2, "page": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 1 and page["next"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2026-13-01"},
        {"start": "yesterday"},
        {"start": "2026-10-02", "end": "2026-10-01"},
        {"start": "2020-01-01", "end": "2026-01-01"},
        {"page": "99"},
    ],
)
def test_bad_ranges_and_pages_are_4xx(ledger, client_for, owner, params):
    response = client_for(owner, ledger).get(URL, params)
    assert 400 <= response.status_code < 500, response.content


def test_who_may_read_it(ledger, client_for, owner, teammate, outsider, token_for, api_client):
    assert client_for(owner, ledger).get(URL).status_code == 200
    assert client_for(teammate, ledger).get(URL).status_code == 403  # a plain member
    ledger.memberships.filter(user=teammate).update(role=Role.ADMIN)
    assert client_for(teammate, ledger).get(URL).json()["count"] == 3
    # Another org's caller sees its own (empty) ledger, never this one.
    assert client_for(outsider).get(URL).json()["count"] == 0

    def bearer(**kwargs) -> int:
        return api_client(token_for(ledger, **kwargs)).get(URL).status_code

    assert bearer(scopes=["publisher"]) == 200
    assert bearer(scopes=["read", "predict"]) == 403
