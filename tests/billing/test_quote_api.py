"""`POST /api/v1/predictions/quote` and `max_cost` on creates (REST and `/v1`): what a call
would cost, and a cap on one call, through the real views on PostgreSQL and Redis."""

from __future__ import annotations

import json

import pytest

from billing import prices
from billing.models import UsageRecord
from inference.models import Prediction

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("worker_present")]

# 4 input tokens estimated for "hello there", 10 new tokens: 0.004 + 0.020 + 0.001.
BODY = {"model": "echo", "input": {"prompt": "hello there", "max_new_tokens": 10}}


@pytest.fixture
def org(owner):
    return owner.memberships.get(org__is_personal=True).org


@pytest.fixture
def priced(echo, free_plan):
    return prices.set_price(
        echo, input_per_million="1000", output_per_million="2000", per_request="0.001"
    )


def post(client, path: str, body: object):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json")


def test_a_quote_gives_the_worst_and_expected_cost_and_runs_nothing(
    org, priced, token_for, api_client
):
    response = post(api_client(token_for(org)), "/api/v1/predictions/quote", BODY)
    assert response.status_code == 200
    # Without history the expected cost assumes half the output: 0.004 + 0.010 + 0.001.
    assert response.json() == {"currency": "usd", "max_cost": "0.025", "expected_cost": "0.015"}
    assert not Prediction.objects.exists() and not UsageRecord.objects.exists()


def test_a_free_model_quotes_zero(org, free_plan, token_for, api_client):
    response = post(api_client(token_for(org)), "/api/v1/predictions/quote", BODY)
    assert response.json() == {"currency": "usd", "max_cost": "0", "expected_cost": "0"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"model": "echo"}, 400),
        ({"model": "echo", "input": "hello"}, 400),
        ({"model": "nope", "input": {"prompt": "x"}}, 404),
        ({"model": "echo", "input": {"prompt": "x", "max_new_tokens": "many"}}, 400),
        ({**BODY, "max_cost": "abc"}, 400),
        ({**BODY, "max_cost": True}, 400),
        ({**BODY, "max_cost": "-1"}, 400),
        ({**BODY, "max_cost": {"amount": 1}}, 400),
        ("[1, 2", 400),
    ],
)
def test_bad_quotes_are_4xx(org, priced, token_for, api_client, body, status):
    response = post(api_client(token_for(org)), "/api/v1/predictions/quote", body)
    assert response.status_code == status
    assert "error" in response.json()


def test_quotes_need_the_predict_scope_and_a_caller(org, priced, token_for, api_client):
    read_only = api_client(token_for(org, scopes=["read"]))
    assert post(read_only, "/api/v1/predictions/quote", BODY).status_code == 403
    assert post(api_client(), "/api/v1/predictions/quote", BODY).status_code == 401


def test_a_teammate_quotes_like_the_owner(org, teammate, priced, client_for):
    response = post(client_for(teammate, org), "/api/v1/predictions/quote", BODY)
    assert response.status_code == 200


def test_max_cost_below_the_worst_case_is_402_and_creates_nothing(
    org, priced, token_for, api_client
):
    client = api_client(token_for(org))
    response = post(client, "/api/v1/predictions", {**BODY, "max_cost": "0.02"})
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("cost_cap_exceeded", "max_cost")
    assert "$0.025" in error["message"] and "$0.02" in error["message"]
    assert not Prediction.objects.exists()
    assert post(client, "/api/v1/predictions", {**BODY, "max_cost": "0.025"}).status_code == 201


def test_max_cost_on_v1_is_an_extra_field_in_openai_shape(org, priced, token_for, api_client):
    client = api_client(token_for(org))
    body = {
        "model": "echo",
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 10,
        "max_cost": 0.001,
    }
    response = post(client, "/v1/chat/completions", body)
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("cost_cap_exceeded", "max_cost")
    bad = post(client, "/v1/chat/completions", {**body, "max_cost": "lots"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "max_cost"
    assert not Prediction.objects.exists()
