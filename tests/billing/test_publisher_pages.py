"""The publisher's listings-and-prices page and analytics page (issue #13): owners and
admins schedule pay-as-you-go price changes at least PRICE_CHANGE_NOTICE_HOURS ahead,
members read, another org's listing is a 404 like a missing one; the analytics page and
its CSV show the stats API's figures, money for owners and admins only."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from billing import price_notices, prices, tasks
from billing.models import ListingPrice, PriceChangeNotice
from models_hub.models import ListingStatus, ModelListing
from portal.errors import InvalidInput, NotAllowed, NotFound
from portal.models import Organization, Role
from tests.billing.test_publisher_stats import call, make_traffic
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

LISTINGS = "/publisher/listings/"
ANALYTICS = "/publisher/analytics/"
ANALYTICS_CSV = "/publisher/analytics.csv"
STATS_API = "/api/v1/publisher/stats"
RANGE = {"start": "2026-11-01", "end": "2026-11-05"}
NEW_PRICE = {
    "input_per_million": "2.5",
    "output_per_million": "7.25",
    "per_request": "0.001",
    "per_second": "0",
}


def price_url(slug: str) -> str:
    return f"/publisher/listings/{slug}/price/"


def ahead(hours: float) -> datetime:
    return timezone.now() + timedelta(hours=hours)


def form_data(when: datetime, **overrides: str) -> dict[str, str]:
    return {**NEW_PRICE, "effective_from": f"{when.astimezone(UTC):%Y-%m-%dT%H:%M}", **overrides}


def price_rows(listing) -> int:
    return ListingPrice.objects.filter(listing=listing).count()


def normalized(response, slug: str) -> str:
    """The page without its slug and CSRF tokens (fresh on every render)."""
    text = response.content.decode().replace(slug, "<SLUG>")
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "csrf", text)


# --- Listings and prices: who may do what ------------------------------------------------


def test_owner_sees_every_listing_of_the_org_with_a_form(listing, org, owner, client_for):
    draft = ModelListing.objects.create(
        slug="acme-draft", name="Acme draft", org=org, task=listing.task,
        source="builtin:echo", status=ListingStatus.DRAFT, input_schema=listing.input_schema,
    )  # fmt: skip
    page = client_for(owner, org).get(LISTINGS)
    assert page.status_code == 200
    text = page.content.decode()
    assert "acme-echo" in text and draft.slug in text
    assert price_url(listing.slug) in text and price_url(draft.slug) in text
    # The draft was never priced: it is free.
    assert "never priced: free" in text


def test_member_reads_but_cannot_change_a_price(listing, org, teammate, client_for, onboarded):
    member = client_for(teammate, org)
    page = member.get(LISTINGS)
    assert page.status_code == 200
    assert "acme-echo" in page.content.decode()
    assert price_url(listing.slug) not in page.content.decode()
    before = price_rows(listing)
    assert member.post(price_url(listing.slug), form_data(ahead(25))).status_code == 403
    assert price_rows(listing) == before


def test_admin_may_schedule_a_price(listing, org, admin, client_for, onboarded):
    response = client_for(admin, org).post(price_url(listing.slug), form_data(ahead(25)))
    assert response.status_code == 302 and response["Location"] == LISTINGS
    latest = ListingPrice.objects.filter(listing=listing).order_by("-pk").first()
    assert latest.created_by == admin and latest.per_request == Decimal("0.001")


def test_another_orgs_listing_is_a_404_like_a_missing_one(
    listing, outsider, outsider_org, client_for, onboarded
):
    session = client_for(outsider, outsider_org)  # owner of their own org
    assert "acme-echo" not in session.get(LISTINGS).content.decode()
    before = price_rows(listing)
    theirs = session.post(price_url(listing.slug), form_data(ahead(25)))
    missing = session.post(price_url("no-such-model"), form_data(ahead(25)))
    assert theirs.status_code == missing.status_code == 404
    assert normalized(theirs, "acme-echo") == normalized(missing, "no-such-model")
    assert price_rows(listing) == before


def test_the_service_checks_the_actor_and_the_listings_owner(listing, teammate, outsider, echo):
    with pytest.raises(NotAllowed):
        prices.schedule_publisher_price(listing, teammate, ahead(25), per_request="1")
    with pytest.raises(NotFound):
        prices.schedule_publisher_price(listing, outsider, ahead(25), per_request="1")
    # The operator's own listings (no org) are priced by operators only.
    with pytest.raises(NotFound):
        prices.schedule_publisher_price(echo, outsider, ahead(25), per_request="1")


# --- The notice rule ---------------------------------------------------------------------


def test_a_change_less_than_24_hours_ahead_is_refused(listing, org, owner, client_for, onboarded):
    before = price_rows(listing)
    response = client_for(owner, org).post(price_url(listing.slug), form_data(ahead(23)))
    assert response.status_code == 400
    assert "at least 24 hours ahead" in response.content.decode()
    assert price_rows(listing) == before


def test_a_change_25_hours_ahead_is_scheduled_and_shown_with_who_it_affects(
    listing, org, owner, outsider_org, client_for, onboarded
):
    customers(listing, org, outsider_org)
    when = ahead(25)
    client = client_for(owner, org)
    response = client.post(price_url(listing.slug), form_data(when))
    assert response.status_code == 302
    page = client.get(LISTINGS).content.decode()
    assert "scheduled from" in page  # the success message
    assert f"{when.astimezone(UTC):%Y-%m-%d %H:%M}" in page
    assert "2 orgs" in page


def test_the_notice_comes_from_the_setting(listing, owner, onboarded, settings):
    settings.PRICE_CHANGE_NOTICE_HOURS = 48
    with pytest.raises(InvalidInput, match="48 hours"):
        prices.schedule_publisher_price(listing, owner, ahead(47), per_request="1")
    assert prices.schedule_publisher_price(listing, owner, ahead(49), per_request="1").pk


def test_operators_still_price_at_once(listing, staff):
    before = timezone.now()
    price = prices.set_price(listing, per_request="3")
    assert before <= price.effective_from <= timezone.now()
    assert prices.price_at(listing).per_request == Decimal(3)
    staffs = prices.set_price(listing, actor=staff, per_request="4")
    assert prices.price_at(listing, staffs.effective_from).per_request == Decimal(4)


def test_nothing_changes_before_the_effective_date(listing, owner, onboarded, client):
    old = prices.price_at(listing)
    when = ahead(25)
    prices.schedule_publisher_price(listing, owner, when, **NEW_PRICE)
    assert prices.price_at(listing) == old
    assert prices.price_at(listing, when - timedelta(seconds=1)) == old
    new = prices.price_at(listing, when)
    assert (new.input_per_million, new.per_request) == (Decimal("2.5"), Decimal("0.001"))
    # The public catalog keeps showing the price in force.
    pricing = client.get(f"/api/v1/models/{listing.slug}").json()["pricing"]
    assert (pricing["input_per_million"], pricing["per_request"]) == ("1", "0")


def customers(listing, org, outsider_org) -> None:
    """Two customer orgs called the listing within 30 days; a third one called it long
    ago, and the publisher's own calls are not a customer's."""
    call(listing, org, timezone.now() - timedelta(days=1))
    call(listing, outsider_org, timezone.now() - timedelta(days=29))
    call(listing, outsider_org, timezone.now() - timedelta(days=2))
    recent = Organization.objects.create(name="Beta Co", slug="beta-co")
    recent.memberships.create(user=make_user("beta@example.com"), role=Role.OWNER)
    call(listing, recent, timezone.now() - timedelta(hours=1))
    old = Organization.objects.create(name="Old customer", slug="old-customer")
    old.memberships.create(user=make_user("old@example.com"), role=Role.OWNER)
    call(listing, old, timezone.now() - timedelta(days=31))


def test_the_customers_it_affects_are_emailed_once(
    listing, org, owner, outsider_org, onboarded, mailoutbox, monkeypatch,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    customers(listing, org, outsider_org)
    monkeypatch.setattr(tasks.announce_price_change, "delay", price_notices.announce)
    when = ahead(25)
    with django_capture_on_commit_callbacks(execute=True):
        price = prices.schedule_publisher_price(listing, owner, when, **NEW_PRICE)
    assert sorted(mail.to[0] for mail in mailoutbox) == ["beta@example.com", "outsider@example.com"]
    [first, _] = mailoutbox
    assert listing.name in first.subject
    assert f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC" in first.body
    assert "per 1M input tokens: 1 -> 2.5 USD" in first.body
    # A redelivered task tells no one twice.
    assert price_notices.announce(price.pk) == 0
    assert len(mailoutbox) == 2
    assert PriceChangeNotice.objects.filter(price=price).count() == 2


# --- Onboarding and bad input -------------------------------------------------------------


def test_a_paid_price_needs_an_onboarded_publisher(listing, org, owner, client_for):
    before = price_rows(listing)
    client = client_for(owner, org)
    response = client.post(price_url(listing.slug), form_data(ahead(25)))
    assert response.status_code == 400
    assert "finish setting up payouts" in response.content.decode()
    assert price_rows(listing) == before
    free = {part: "0" for part in prices.PARTS}
    assert client.post(price_url(listing.slug), form_data(ahead(25), **free)).status_code == 302
    assert price_rows(listing) == before + 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"per_request": ""},
        {"per_request": "-1"},
        {"per_request": "abc"},
        {"per_request": "NaN"},
        {"per_request": "1e400"},
        {"per_request": "1000000"},
        {"per_request": "0.0000001"},
        {"per_request": "1" * 40},
        {"effective_from": ""},
        {"effective_from": "tomorrow"},
        {"effective_from": "2026-13-45T10:00"},
        {"effective_from": "2020-01-01T10:00"},
    ],
    ids=lambda overrides: ",".join(f"{k}={v[:12]}" for k, v in overrides.items()),
)
def test_bad_input_rerenders_with_an_error_and_writes_nothing(
    overrides, listing, org, owner, client_for, onboarded
):
    before = price_rows(listing)
    data = form_data(ahead(25), **overrides)
    response = client_for(owner, org).post(price_url(listing.slug), data)
    assert response.status_code == 400
    assert 'class="error"' in response.content.decode()
    assert price_rows(listing) == before


def test_the_form_needs_a_csrf_token(listing, org, owner, onboarded):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    before = price_rows(listing)
    assert client.post(price_url(listing.slug), form_data(ahead(25))).status_code == 403
    assert price_rows(listing) == before


# --- Analytics ----------------------------------------------------------------------------


@pytest.fixture
def traffic(org, outsider_org, listing):
    # Six-place amounts: the CSV must carry them exactly as the API does.
    return make_traffic(org, outsider_org, listing, "0.123457", "0.098766", "0.024691")


def read_csv(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_the_csv_matches_the_stats_api_to_the_cent(traffic, org, owner, client_for):
    client = client_for(owner, org)
    api = client.get(STATS_API, RANGE).json()
    rows = read_csv(client.get(ANALYTICS_CSV, RANGE))
    expected = [
        {
            "date": day["date"], "model": listing["model"], "calls": str(day["calls"]),
            "unique_orgs": str(day["unique_orgs"]), "input_tokens": str(day["input_tokens"]),
            "output_tokens": str(day["output_tokens"]), "revenue": day["revenue"],
            "publisher_share": day["publisher_share"],
            "error_rate": "" if day["error_rate"] is None else str(day["error_rate"]),
            "p50_ms": "" if day["latency_ms"]["p50"] is None else str(day["latency_ms"]["p50"]),
            "p95_ms": "" if day["latency_ms"]["p95"] is None else str(day["latency_ms"]["p95"]),
        }
        for listing in api["listings"]
        for day in listing["days"]
    ]  # fmt: skip
    assert rows == expected
    assert rows[0]["revenue"] == "0.123457" and rows[0]["calls"] == "5"


def test_the_analytics_page_shows_the_days_and_charts(traffic, org, owner, client_for):
    page = client_for(owner, org).get(ANALYTICS, RANGE)
    assert page.status_code == 200
    text = page.content.decode()
    assert "2026-11-02" in text and "0.123457" in text and "0.098766" in text
    assert text.count('<svg class="chart"') == 2  # calls and revenue
    assert "<script>" not in text  # the CSP forbids inline script: the charts are SVG
    assert 'href="/publisher/analytics.csv?start=2026-11-01&amp;end=2026-11-05"' in text


def test_members_see_analytics_without_money(traffic, org, teammate, client_for):
    member = client_for(teammate, org)
    text = member.get(ANALYTICS, RANGE).content.decode()
    assert "2026-11-02" in text and "0.123457" not in text and "0.098766" not in text
    assert text.count('<svg class="chart"') == 1
    rows = read_csv(member.get(ANALYTICS_CSV, RANGE))
    assert rows[0]["calls"] == "5" and "revenue" not in rows[0]
    assert "0.123457" not in member.get(ANALYTICS_CSV, RANGE).content.decode()


def test_analytics_show_only_the_callers_own_listings(traffic, outsider, client_for):
    own = client_for(outsider)
    assert "acme-echo" not in own.get(ANALYTICS, RANGE).content.decode()
    assert read_csv(own.get(ANALYTICS_CSV, RANGE)) == []


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2026-11-05", "end": "2026-11-01"},
        {"start": "2026-01-01", "end": "2026-11-01"},
        {"start": "not-a-date"},
    ],
)
def test_a_bad_range_is_a_400_with_its_reason(params, traffic, org, owner, client_for):
    client = client_for(owner, org)
    page = client.get(ANALYTICS, params)
    assert page.status_code == 400 and 'class="error"' in page.content.decode()
    assert client.get(ANALYTICS_CSV, params).status_code == 400


def test_the_publisher_page_links_both_pages(org, owner, client_for):
    text = client_for(owner, org).get("/publisher/").content.decode()
    assert f'href="{LISTINGS}"' in text and f'href="{ANALYTICS}"' in text
