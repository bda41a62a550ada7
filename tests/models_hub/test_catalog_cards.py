"""Catalog cards (issue #15): price, public run figures, a Try button; echo never first."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.prices import set_price
from inference import catalog_stats
from inference.models import Prediction, Status
from models_hub.models import Task

pytestmark = pytest.mark.django_db


def run(listing, org, *, status=Status.SUCCEEDED, seconds=None, days_ago=0):
    prediction = Prediction.objects.create(
        org=org, model=listing, input={"prompt": "x"}, status=status, predict_time=seconds
    )
    if days_ago:
        Prediction.objects.filter(pk=prediction.pk).update(
            created_at=timezone.now() - timedelta(days=days_ago)
        )
    return prediction


def cards(client) -> list:
    return client.get("/models/").context["cards"]


def test_echo_is_never_first_even_when_its_name_sorts_first(make_listing, client):
    make_listing("echo", name="Echo")
    make_listing("zephyr-chat", name="Zephyr chat", source="hf:acme/zephyr")
    assert [card.listing.slug for card in cards(client)] == ["zephyr-chat", "echo"]
    # The API lists in the same order as the page.
    assert [m["slug"] for m in client.get("/api/v1/models").json()["results"]] == [
        "zephyr-chat",
        "echo",
    ]


def test_cards_show_price_runs_median_latency_and_try(make_listing, client, org, outsider_org):
    listing = make_listing("zephyr-chat", name="Zephyr chat", source="hf:acme/zephyr")
    set_price(listing, input_per_million=Decimal("0.5"), output_per_million=Decimal("1.5"))
    # Runs from two orgs count together; a failure counts as a run but has no latency;
    # a run older than 30 days counts for nothing.
    run(listing, org, seconds=0.1)
    run(listing, org, seconds=0.3)
    run(listing, outsider_org, seconds=0.2)
    run(listing, org, status=Status.FAILED)
    run(listing, org, seconds=9.0, days_ago=31)
    catalog_stats.cache.delete(catalog_stats.CACHE_KEY)

    (card,) = cards(client)
    assert card.stats.runs == 4
    assert card.stats.median_ms == 200
    html = client.get("/models/").content.decode()
    assert "$0.5 per 1M input tokens · $1.5 per 1M output tokens" in html
    assert "4 runs in the last 30 days" in html
    assert "median 200 ms" in html
    assert 'href="/models/zephyr-chat/#playground"' in html
    assert f"by {listing.publisher_name}" in html


def test_a_model_without_runs_says_so(make_listing, client):
    make_listing("zephyr-chat", source="hf:acme/zephyr")
    html = client.get("/models/").content.decode()
    assert "0 runs in the last 30 days" in html
    assert "no latency yet" in html
    assert "Free" in html


def test_the_page_costs_no_query_per_card(make_listing, client, org):
    for n in range(3):
        run(make_listing(f"model-{n}", source="hf:acme/m"), org, seconds=0.1)
    catalog_stats.cache.delete(catalog_stats.CACHE_KEY)
    client.get("/models/")  # warms the session, the hot caches and the stats
    with CaptureQueriesContext(connection) as few:
        client.get("/models/")
    for n in range(3, 12):
        make_listing(f"model-{n}", task=Task.TEXT_GENERATION, source="hf:acme/m")
    catalog_stats.cache.delete(catalog_stats.CACHE_KEY)
    client.get("/models/")
    with CaptureQueriesContext(connection) as many:
        response = client.get("/models/")
    assert len(response.context["cards"]) == 12
    assert len(many) == len(few)


def test_stats_are_cached_aggregates_without_any_org_data(make_listing, org):
    listing = make_listing("zephyr-chat", source="hf:acme/zephyr")
    run(listing, org, seconds=0.1)
    catalog_stats.cache.delete(catalog_stats.CACHE_KEY)
    first = catalog_stats.catalog_stats()
    run(listing, org, seconds=0.1)
    # Cached: the new run shows within CACHE_SECONDS, not on every page view.
    assert catalog_stats.catalog_stats() == first
    stored = catalog_stats.cache.get(catalog_stats.CACHE_KEY)
    assert stored == {listing.pk: (1, pytest.approx(0.1))}


def test_portable_median_agrees_with_postgresql(make_listing, org):
    listing = make_listing("zephyr-chat", source="hf:acme/zephyr")
    for seconds in (0.1, 0.2, 0.3, 0.4):
        run(listing, org, seconds=seconds)
    portable = catalog_stats._compute_portable()
    assert portable[listing.pk].median_seconds == pytest.approx(0.25)
    if connection.vendor == "postgresql":
        assert catalog_stats._compute_postgresql()[listing.pk] == portable[listing.pk]


def test_the_quickstarts_first_call_is_never_echo(make_listing, client):
    make_listing("echo", name="Echo")
    make_listing("smollm2-135m-instruct", source="hf:acme/smol")
    response = client.get("/docs/quickstart/")
    assert response.context["chat_model"] == "smollm2-135m-instruct"
    assert [m.slug for m in response.context["models"]][-1] == "echo"
