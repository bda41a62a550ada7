"""`GET /api/v1/publisher/stats` (issue #13, API.md Publishers): per listing of the
caller's org, by UTC day: calls, unique orgs, tokens, revenue, share, error rate and
latency percentiles; owners, admins and `publisher` tokens only; nobody else's listings."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing import publisher_stats
from billing.models import RoyaltyEntry
from inference.models import Prediction
from models_hub.models import ModelListing
from portal.models import Role

pytestmark = pytest.mark.django_db

URL = "/api/v1/publisher/stats"
DAY_1 = datetime(2026, 11, 2, 10, tzinfo=UTC)
DAY_2 = datetime(2026, 11, 3, 23, 59, tzinfo=UTC)
RANGE = {"start": "2026-11-01", "end": "2026-11-05"}


@pytest.fixture
def listing(org, echo):
    """A copy of echo, published by `org`."""
    echo.pk, echo.slug, echo.org = None, "acme-echo", org
    echo.save()
    return ModelListing.objects.get(slug="acme-echo")


def call(listing, customer, when, status="succeeded", seconds=None, tokens=(0, 0)):
    made = Prediction.objects.create(
        org=customer, model=listing, status=status, input_tokens=tokens[0],
        output_tokens=tokens[1], queue_time=0.1 if seconds else None, predict_time=seconds,
    )  # fmt: skip
    Prediction.objects.filter(pk=made.pk).update(created_at=when)
    return made


def make_traffic(publisher, customer, listing, charge: str, share: str, fee: str):
    """Two days of calls to `listing` (four by `customer` on day 1, one failed by the
    publisher itself, one still running on day 2) and one royalty entry of day 1."""
    for seconds in (0.9, 1.9, 2.9, 3.9):
        call(listing, customer, DAY_1, seconds=seconds, tokens=(10, 20))
    call(listing, publisher, DAY_1, status="failed", seconds=0.4)
    call(listing, customer, DAY_2, status="processing")
    entry = RoyaltyEntry.objects.create(
        publisher=publisher, listing=listing, customer=customer, kind="usage", reference="u:1",
        customer_charge=Decimal(charge), publisher_share=Decimal(share),
        platform_fee=Decimal(fee), fee_percent=Decimal(20),
    )  # fmt: skip
    RoyaltyEntry.objects.filter(pk=entry.pk).update(created_at=DAY_1)
    return listing


@pytest.fixture
def traffic(org, outsider_org, listing):
    return make_traffic(org, outsider_org, listing, "0.5", "0.4", "0.1")


def test_per_listing_per_day(traffic, client_for, owner, org):
    body = client_for(owner, org).get(URL, RANGE).json()
    [listing] = body["listings"]
    assert listing["model"] == "acme-echo"
    first, second = listing["days"]
    assert first == {
        "date": "2026-11-02", "calls": 5, "unique_orgs": 2, "input_tokens": 40,
        "output_tokens": 80, "revenue": "0.5", "publisher_share": "0.4", "error_rate": 0.2,
        "latency_ms": {"p50": 2000.0, "p95": 4000.0},
    }  # fmt: skip
    assert (second["date"], second["calls"], second["error_rate"]) == ("2026-11-03", 1, None)
    assert second["latency_ms"] == {"p50": None, "p95": None}


def test_who_may_read_it(
    traffic, client_for, owner, teammate, outsider, org, api_client, token_for
):
    assert client_for(teammate, org).get(URL, RANGE).status_code == 403
    org.memberships.filter(user=teammate).update(role=Role.ADMIN)
    assert len(client_for(teammate, org).get(URL, RANGE).json()["listings"]) == 1
    # The customer org sees its own (empty) publisher stats, not the publisher's.
    assert client_for(outsider).get(URL, RANGE).json()["listings"] == []
    assert api_client(token_for(org, scopes=["publisher"])).get(URL, RANGE).status_code == 200
    assert api_client(token_for(org, scopes=["read"])).get(URL, RANGE).status_code == 403


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2026-11-05", "end": "2026-11-01"},
        {"start": "2026-01-01", "end": "2026-11-01"},
        {"start": "not a date"},
        {"end": "2026-02-30"},
    ],
)
def test_bad_ranges_are_400(client_for, owner, org, params):
    assert client_for(owner, org).get(URL, params).status_code == 400


@pytest.mark.parametrize(
    ("values", "p50", "p95"),
    [([], None, None), ([5.0], 5.0, 5.0), ([1.0, 2.0, 3.0, 4.0], 2.0, 4.0)],
)
def test_percentiles_are_nearest_rank(values, p50, p95):
    assert publisher_stats.percentile(values, 0.5) == p50
    assert publisher_stats.percentile(values, 0.95) == p95
