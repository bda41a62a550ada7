"""Listing prices with history (issue #12): `set_price` / `price_at`, the `set_price`
operator command, the admin and the demo prices, on PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import Client
from django.utils import timezone

from billing import prices
from billing.demo import DEMO_PRICES, load_demo_prices
from billing.models import ListingPrice
from portal.errors import InvalidInput

pytestmark = pytest.mark.django_db


def parts(price: ListingPrice) -> tuple[Decimal, ...]:
    return tuple(getattr(price, part) for part in prices.PARTS)


def test_a_listing_without_a_price_is_free(echo):
    price = prices.price_at(echo)
    assert price.pk is None and price.is_free
    assert parts(price) == (0, 0, 0, 0)
    assert price.currency == "usd"


def test_the_price_in_force_is_the_latest_row_effective_at_that_time(echo):
    first = prices.set_price(echo, input_per_million="0.5", output_per_million="1.5")
    later = timezone.now() + timedelta(days=3)
    second = prices.set_price(echo, input_per_million="0.7", effective_from=later)
    assert prices.price_at(echo) == first
    # A future price applies from its date on, not before.
    assert prices.price_at(echo, later - timedelta(seconds=1)) == first
    assert prices.price_at(echo, later) == second
    # Before the first row the listing was free.
    assert prices.price_at(echo, first.effective_from - timedelta(seconds=1)).pk is None
    # The change added a row and rewrote nothing: parts left out keep their value.
    assert parts(second) == (Decimal("0.7"), Decimal("1.5"), 0, 0)
    first.refresh_from_db()
    assert parts(first) == (Decimal("0.5"), Decimal("1.5"), 0, 0)
    assert ListingPrice.objects.filter(listing=echo).count() == 2


def test_two_prices_from_the_same_moment_the_later_one_wins(echo):
    moment = timezone.now() + timedelta(hours=1)
    prices.set_price(echo, per_request="0.01", effective_from=moment)
    newer = prices.set_price(echo, per_request="0.02", effective_from=moment)
    assert prices.price_at(echo, moment) == newer


def test_prices_of_many_listings_in_one_query(listings, django_assert_num_queries):
    chat, embed = listings["smollm2-135m-instruct"], listings["all-minilm-l6-v2"]
    prices.set_price(chat, input_per_million="0.05")
    prices.set_price(chat, input_per_million="0.06")
    prices.set_price(embed, per_second="0.001")
    with django_assert_num_queries(1):
        found = prices.prices_at(listings.values())
    assert found[chat.pk].input_per_million == Decimal("0.06")
    assert found[embed.pk].per_second == Decimal("0.001")
    assert found[listings["echo"].pk].is_free


@pytest.mark.django_db(transaction=True)
def test_concurrent_partial_changes_keep_each_others_parts(echo):
    """Each change starts from the price before it: without the lock on the listing, two
    changes at once would both start from the same price and one part would be lost;
    reading the clock before taking the lock, a change that waited would take effect
    before the one it waited for. Several rounds, as a lost part depends on timing."""
    barrier = threading.Barrier(len(prices.PARTS))

    def change(part: str, amount: str) -> None:
        try:
            barrier.wait()
            prices.set_price(echo, **{part: amount})
        finally:
            connections.close_all()

    for amount in ("0.25", "0.5", "0.75", "1"):
        with ThreadPoolExecutor(max_workers=len(prices.PARTS)) as pool:
            list(pool.map(change, prices.PARTS, [amount] * len(prices.PARTS)))
        assert parts(prices.price_at(echo)) == (Decimal(amount),) * 4
    assert ListingPrice.objects.filter(listing=echo).count() == 16


@pytest.mark.parametrize(
    ("value", "why"),
    [("-0.1", "zero or more"), ("abc", "not a decimal"), ("NaN", "zero or more"),
     ("Infinity", "zero or more"), ("0.0000001", "6 decimal places"),
     ("1000000", "below"), ("1e400", "below"), (0.5, "decimal string")],
)  # fmt: skip
def test_bad_amounts_are_refused_and_nothing_is_written(echo, value, why):
    with pytest.raises(InvalidInput) as caught:
        prices.set_price(echo, input_per_million="0.5", output_per_million=value)
    assert why in caught.value.message
    assert not ListingPrice.objects.exists()


def test_a_price_cannot_take_effect_in_the_past(echo):
    with pytest.raises(InvalidInput):
        prices.set_price(echo, per_request="1", effective_from=timezone.now() - timedelta(hours=1))
    assert not ListingPrice.objects.exists()


def test_decimal_strings_are_normalized():
    cases = {"0": "0", "0.000000": "0", "0.500000": "0.5", "1.5": "1.5", "100.000000": "100",
             "0.000001": "0.000001", "12.340": "12.34"}  # fmt: skip
    for raw, shown in cases.items():
        assert prices.decimal_string(Decimal(raw)) == shown


def test_set_price_command_changes_only_the_parts_given(echo, owner):
    out = StringIO()
    call_command("set_price", "--model", "echo", "--input-per-million", "0.50",
                 "--output-per-million", "1.5", stdout=out)  # fmt: skip
    assert "input_per_million 0.5" in out.getvalue()
    call_command("set_price", "--model", "echo", "--per-request", "0.001", stdout=StringIO())
    assert parts(prices.price_at(echo)) == (Decimal("0.5"), Decimal("1.5"), Decimal("0.001"), 0)
    assert ListingPrice.objects.filter(listing=echo).count() == 2


@pytest.mark.parametrize(
    "args",
    [["--model", "nope", "--per-request", "1"], ["--model", "echo"],
     ["--model", "echo", "--per-request", "1", "--per-second", "-1"],
     ["--model", "echo", "--input-per-million", "1e"]],
)  # fmt: skip
def test_set_price_command_errors_write_nothing(echo, args):
    with pytest.raises(CommandError):
        call_command("set_price", *args, stdout=StringIO())
    assert not ListingPrice.objects.exists()


def test_demo_prices_are_loaded_once_and_echo_stays_free(listings):
    first = load_demo_prices()
    assert {price.listing.slug for price in first} == set(DEMO_PRICES)
    assert all(not price.is_free for price in first)
    load_demo_prices()  # idempotent: no second row for an unchanged price
    assert ListingPrice.objects.count() == len(DEMO_PRICES)
    assert prices.price_at(listings["echo"]).is_free


@pytest.fixture
def staff_client(django_user_model) -> Client:
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-12345678")
    client = Client()
    client.force_login(admin)
    return client


def test_admin_adds_prices_through_the_service_and_keeps_those_in_force(staff_client, echo):
    response = staff_client.post(
        "/admin/billing/listingprice/add/",
        {"listing": echo.pk, "input_per_million": "0.25", "output_per_million": "0",
         "per_request": "0", "per_second": "0", "effective_from": ""},
    )  # fmt: skip
    assert response.status_code == 302, response.content
    price = prices.price_at(echo)
    assert price.input_per_million == Decimal("0.25") and price.created_by is not None
    change = staff_client.post(
        f"/admin/billing/listingprice/{price.pk}/change/",
        {"listing": echo.pk, "input_per_million": "9", "output_per_million": "0",
         "per_request": "0", "per_second": "0", "effective_from": ""},
    )  # fmt: skip
    assert change.status_code == 403
    delete = staff_client.post(f"/admin/billing/listingprice/{price.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    price.refresh_from_db()
    assert price.input_per_million == Decimal("0.25")


def test_admin_refuses_a_past_date(staff_client, echo):
    past = timezone.now() - timedelta(days=1)
    response = staff_client.post(
        "/admin/billing/listingprice/add/",
        {"listing": echo.pk, "input_per_million": "1", "output_per_million": "0",
         "per_request": "0", "per_second": "0",
         "effective_from": past.strftime("%Y-%m-%d %H:%M:%S")},
    )  # fmt: skip
    assert response.status_code == 200
    assert b"in the past" in response.content
    assert not ListingPrice.objects.exists()
