"""Catalog pages: list with search, filters and pages; model pages; privacy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing import prices
from models_hub.models import ListingStatus


@pytest.fixture
def catalog(make_listing):
    make_listing("chat-small", summary="A small chat model", tags=["chat"])
    make_listing(
        "embed-mini",
        task="embeddings",
        summary="Sentence vectors",
        tags=["search"],
        input_schema={"type": "object", "properties": {"input": {"type": "string"}}},
        example_input={"input": "hi"},
        max_params={},
    )
    make_listing("draft-model", status=ListingStatus.DRAFT, summary="Not ready")
    make_listing("old-model", status=ListingStatus.DEPRECATED, summary="Superseded")


def listed_slugs(response) -> list[str]:
    return [listing.slug for listing in response.context["page"]]


def test_list_shows_published_public_models(catalog):
    response = Client().get(reverse("model_list"))
    assert response.status_code == 200
    assert sorted(listed_slugs(response)) == ["chat-small", "embed-mini"]
    assert b"Sentence vectors" in response.content


def test_search_task_and_tag_filters(catalog):
    client = Client()
    assert listed_slugs(client.get("/models/", {"q": "vectors"})) == ["embed-mini"]
    assert listed_slugs(client.get("/models/", {"q": "small chat"})) == ["chat-small"]
    assert listed_slugs(client.get("/models/", {"task": "embeddings"})) == ["embed-mini"]
    assert listed_slugs(client.get("/models/", {"tag": "chat"})) == ["chat-small"]
    assert listed_slugs(client.get("/models/", {"q": "nothing-like-this"})) == []


def test_bad_query_parameters_do_not_break_the_page(catalog):
    client = Client()
    bad = [
        {"task": "painting"},
        {"page": "abc"},
        {"page": "999"},
        {"tag": "no slug!"},
        {"q": "\x00"},
    ]
    for params in bad:
        response = client.get("/models/", params)
        assert response.status_code == 200, params
        assert response.context["page"].number >= 1


def test_pagination(make_listing):
    for number in range(15):
        make_listing(f"model-{number:02d}")
    first = Client().get("/models/")
    second = Client().get("/models/", {"page": 2})
    assert len(first.context["page"]) == 12
    assert len(second.context["page"]) == 3
    assert set(listed_slugs(first)).isdisjoint(listed_slugs(second))
    assert b'rel="next"' in first.content


def test_model_page_shows_card_schema_and_snippets(make_listing):
    make_listing(
        "card-model",
        description="# Card\n\n<script>alert('x')</script>\n\n<img src=a onerror=alert(2)>",
    )
    response = Client().get(reverse("model_detail", args=["card-model"]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "<h1>Card</h1>" in body
    assert "alert(&#x27;x&#x27;)" not in body and "<script>alert" not in body
    assert "onerror" not in body
    assert "max_new_tokens" in body  # the input table
    assert "http://testserver/api/v1/predictions" in body
    assert (
        'base_url="http://testserver/v1"' in body
        or "base_url=&quot;http://testserver/v1&quot;" in body
    )
    assert "new WebSocket(prediction.urls.websocket" in body
    assert "No plan lists this model yet" in body
    assert "<strong>Free</strong>" in body  # no price row


def test_model_page_shows_the_price_in_force(make_listing):
    listing = make_listing("priced-model")
    prices.set_price(listing, input_per_million="0.50", output_per_million="1.5")
    prices.set_price(listing, per_request="0.25", effective_from=timezone.now() + timedelta(days=1))
    body = Client().get(reverse("model_detail", args=["priced-model"])).content.decode()
    assert "$0.5 per 1M input tokens" in body and "$1.5 per 1M output tokens" in body
    # Scheduled for tomorrow: not the price that applies now.
    assert "per request" not in body and "<strong>Free</strong>" not in body


def test_echo_is_labelled_diagnostic(make_listing):
    make_listing("echo-test")
    assert b"Diagnostic" in Client().get("/models/").content
    assert b"Diagnostic" in Client().get("/models/echo-test/").content


def test_unknown_draft_and_deprecated_model_pages(catalog):
    client = Client()
    assert client.get("/models/no-such-model/").status_code == 404
    assert client.get("/models/draft-model/").status_code == 404
    # Deprecated: gone from the list, but its page still answers existing users.
    assert client.get("/models/old-model/").status_code == 200


def test_private_listing_is_visible_to_its_org_only(private_listing, client_for, teammate, org,
                                                    outsider, outsider_org):  # fmt: skip
    url = reverse("model_detail", args=[private_listing.slug])
    member = client_for(teammate, org)
    assert member.get(url).status_code == 200
    assert private_listing.slug in listed_slugs(member.get("/models/"))

    stranger = client_for(outsider, outsider_org)
    assert stranger.get(url).status_code == 404
    assert private_listing.slug not in listed_slugs(stranger.get("/models/"))
    assert Client().get(url).status_code == 404
    assert private_listing.slug not in listed_slugs(Client().get("/models/"))
    # The same user sees it only while working in the org that owns it.
    assert client_for(teammate).get(url).status_code == 404
