"""`GET /api/v1/models[/{slug}]`: public, org-aware, errors in API.md's shape."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import prices
from billing.models import Plan
from models_hub.models import ListingStatus, ModelListing


@pytest.fixture
def catalog(make_listing):
    make_listing("chat-small", summary="A small chat model", tags=["chat"])
    make_listing(
        "embed-mini",
        task="embeddings",
        summary="Sentence vectors",
        input_schema={"type": "object", "properties": {"input": {"type": "string"}}},
        example_input={"input": "hi"},
        max_params={},
    )
    make_listing("draft-model", status=ListingStatus.DRAFT)


def assert_error(response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"type", "code", "message", "param"}
    if param is not None:
        assert error["param"] == param
    return error


def test_list_is_public_and_paginated(catalog):
    response = Client().get("/api/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert {item["slug"] for item in body["results"]} == {"chat-small", "embed-mini"}
    item = next(i for i in body["results"] if i["slug"] == "chat-small")
    assert item["task"] == "text-generation"
    assert item["tags"] == ["chat"]
    assert item["publisher"] == "Model Portal"
    assert item["diagnostic"] is True
    assert item["url"] == "http://testserver/api/v1/models/chat-small"


def test_list_filters(catalog):
    client = Client()
    assert [i["slug"] for i in client.get("/api/v1/models?task=embeddings").json()["results"]] == [
        "embed-mini"
    ]
    assert [i["slug"] for i in client.get("/api/v1/models?q=chat").json()["results"]] == [
        "chat-small"
    ]
    assert [i["slug"] for i in client.get("/api/v1/models?tag=chat").json()["results"]] == [
        "chat-small"
    ]
    page = client.get("/api/v1/models?page_size=1&page=2").json()
    assert page["count"] == 2 and len(page["results"]) == 1 and page["previous"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("task=painting", "task"),
        ("page=abc", "page"),
        ("page=0", "page"),
        ("page_size=1000", "page_size"),
        ("tag=not%20a%20slug", "tag"),
        ("q=" + "x" * 201, "q"),
        ("q=%00", "q"),
    ],
)
def test_bad_query_parameters_are_400(catalog, query, param):
    error = assert_error(Client().get(f"/api/v1/models?{query}"), 400, param)
    assert error["type"] == "invalid_request_error"


def test_page_past_the_end_is_404(catalog):
    assert_error(Client().get("/api/v1/models?page=50"), 404)


def test_detail(catalog):
    body = Client().get("/api/v1/models/chat-small").json()
    assert body["slug"] == "chat-small"
    assert body["input_schema"]["properties"]["prompt"]["type"] == "string"
    assert body["example_input"] == {"prompt": "hello"}
    assert body["status"] == "published"
    # No price row: free, and no plan lists it.
    assert body["pricing"] == {
        "currency": "usd",
        "input_per_million": "0",
        "output_per_million": "0",
        "per_request": "0",
        "per_second": "0",
        "plans": [],
    }
    assert body["runtime"]["max_params"] == {"max_new_tokens": 32}
    assert "source" not in body


def test_unknown_and_unpublished_slugs_are_404(catalog):
    for slug in ("no-such-model", "draft-model", "../admin", "%00"):
        error = assert_error(Client().get(f"/api/v1/models/{slug}"), 404)
        assert error["type"] == "not_found_error"


def test_invalid_token_is_401(catalog):
    response = Client(headers={"Authorization": "Bearer mp_nope_nope"}).get("/api/v1/models")
    assert_error(response, 401)


def test_private_listing_for_its_org_only(
    private_listing, org, outsider_org, token_for, api_client
):
    slug = private_listing.slug
    own = api_client(token_for(org, scopes=["read"]))
    assert own.get(f"/api/v1/models/{slug}").status_code == 200
    assert slug in [i["slug"] for i in own.get("/api/v1/models").json()["results"]]

    other = api_client(token_for(outsider_org, scopes=["read", "predict"]))
    error = assert_error(other.get(f"/api/v1/models/{slug}"), 404)
    assert slug in error["message"]  # the same message as for a slug that does not exist
    assert slug not in [i["slug"] for i in other.get("/api/v1/models").json()["results"]]
    assert_error(Client().get(f"/api/v1/models/{slug}"), 404)


def test_session_user_sees_their_org_private_listing(private_listing, client_for, owner, org):
    client = client_for(owner, org)
    assert client.get(f"/api/v1/models/{private_listing.slug}").status_code == 200


def test_pricing_is_machine_readable_on_the_list_and_the_detail(catalog):
    chat = ModelListing.objects.get(slug="chat-small")
    prices.set_price(chat, input_per_million="0.50", output_per_million="1.500000")
    prices.set_price(chat, input_per_million="9", effective_from=timezone.now() + timedelta(days=1))
    pro = Plan.objects.create(slug="pro", name="Pro", tasks=["text-generation"])
    Plan.objects.create(slug="hidden", name="Hidden", tasks=["text-generation"], is_public=False)
    expected = {
        "currency": "usd",
        "input_per_million": "0.5",
        "output_per_million": "1.5",
        "per_request": "0",
        "per_second": "0",
        "plans": [{"slug": pro.slug, "name": pro.name}],
    }
    assert Client().get("/api/v1/models/chat-small").json()["pricing"] == expected
    items = {item["slug"]: item for item in Client().get("/api/v1/models").json()["results"]}
    assert items["chat-small"]["pricing"] == expected
    assert items["embed-mini"]["pricing"]["input_per_million"] == "0"
    assert items["embed-mini"]["pricing"]["plans"] == []


def test_the_list_prices_a_page_in_a_fixed_number_of_queries(make_listing):
    def queries_for_list() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert Client().get("/api/v1/models").status_code == 200
        return len(captured)

    for number in range(2):
        prices.set_price(make_listing(f"priced-{number}"), per_request="0.01")
    few = queries_for_list()
    for number in range(2, 8):
        prices.set_price(make_listing(f"priced-{number}"), per_request="0.01")
    assert queries_for_list() == few
