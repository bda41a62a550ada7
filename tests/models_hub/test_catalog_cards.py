"""Catalog cards (issue #15): price, public run figures (from the periodic stats task,
never from a query per page view), a Try button; echo never first."""

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
from inference.tasks import refresh_catalog_stats
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
    refresh_catalog_stats.apply()  # as beat runs it

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
    refresh_catalog_stats.apply()
    html = client.get("/models/").content.decode()
    assert "0 runs in the last 30 days" in html
    assert "no latency yet" in html
    assert "Free" in html


def test_the_page_costs_no_query_per_card(make_listing, client, org):
    for n in range(3):
        run(make_listing(f"model-{n}", source="hf:acme/m"), org, seconds=0.1)
    refresh_catalog_stats.apply()
    client.get("/models/")  # warms the session and the hot caches
    with CaptureQueriesContext(connection) as few:
        client.get("/models/")
    for n in range(3, 12):
        make_listing(f"model-{n}", task=Task.TEXT_GENERATION, source="hf:acme/m")
    refresh_catalog_stats.apply()
    client.get("/models/")
    with CaptureQueriesContext(connection) as many:
        response = client.get("/models/")
    assert len(response.context["cards"]) == 12
    assert len(many) == len(few)


def predictions_queried(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "inference_prediction" in q["sql"]]


def test_the_task_fills_the_cache_and_pages_only_read_it(make_listing, client, org):
    listing = make_listing("zephyr-chat", source="hf:acme/zephyr")
    run(listing, org, seconds=0.1)
    catalog_stats.cache.delete(catalog_stats.CACHE_KEY)

    refresh_catalog_stats.apply()
    assert catalog_stats.cache.get(catalog_stats.CACHE_KEY) == {listing.pk: (1, pytest.approx(0.1))}
    run(listing, org, seconds=0.1)
    with CaptureQueriesContext(connection) as queries:
        html = client.get("/models/").content.decode()
    # The page shows what the task stored, without looking at predictions.
    assert "1 run in the last 30 days" in html
    assert predictions_queried(queries) == []
    refresh_catalog_stats.apply()
    assert "2 runs in the last 30 days" in client.get("/models/").content.decode()


def test_a_cold_cache_shows_no_figures_and_queries_no_prediction(make_listing, client, org):
    run(make_listing("zephyr-chat", source="hf:acme/zephyr"), org, seconds=0.1)
    catalog_stats.cache.delete(catalog_stats.CACHE_KEY)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/models/")
    assert response.status_code == 200
    (card,) = response.context["cards"]
    assert card.stats is None
    assert "in the last 30 days" not in response.content.decode()
    assert predictions_queried(queries) == []
    # Nor does the landing page, which orders its featured models by runs.
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/").status_code == 200
    assert predictions_queried(queries) == []
    assert catalog_stats.cache.get(catalog_stats.CACHE_KEY) is None


def test_beat_refreshes_the_stats_within_their_cache_life():
    from django.conf import settings

    entry = next(
        e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == refresh_catalog_stats.name
    )
    assert entry["schedule"] < catalog_stats.cache_seconds()


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
