"""The cost of every call (issue #12): priced at settlement with the price in force when
the prediction was created, written once, shown on `GET /api/v1/predictions/{id}`;
through the real pipeline functions (admit, claim, finish) on PostgreSQL and Redis."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.utils import timezone

from billing import prices
from billing.models import CallCost, Subscription
from inference import events, lifecycle
from inference.admission import PredictionRequest, admit
from inference.lifecycle import finish
from inference.models import Prediction, Status
from portal.auth import ALL_SCOPES, Principal

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("worker_present")]
SIX = Decimal("0.000001")


@pytest.fixture
def free_plan(free_plan):
    """Room for the worst cases below (per-second prices over the whole time limit)."""
    free_plan.allowance = Decimal(100)
    free_plan.save()
    return free_plan


@pytest.fixture
def org(owner):
    return owner.memberships.get(org__is_personal=True).org


def run(org, user, **input_) -> Prediction:
    # A worst case (2,001 input tokens, 1,024 output) above every count finished below: a
    # call is never charged more than the worst case it reserved.
    data = {"prompt": "hello there " * 500, "max_new_tokens": 1024, **input_}
    principal = Principal(org=org, user=user, token=None, scopes=ALL_SCOPES)
    return admit(principal, PredictionRequest(model="echo", input=data))


def cost(prediction: Prediction) -> CallCost:
    return CallCost.objects.get(prediction=prediction)


def expected(inp: int, out: int, seconds: Decimal, requests: int, **price: str) -> Decimal:
    unit = {part: Decimal(price.get(part, "0")) for part in prices.PARTS}
    exact = (
        inp * unit["input_per_million"] / 1_000_000
        + out * unit["output_per_million"] / 1_000_000
        + requests * unit["per_request"]
        + seconds * unit["per_second"]
    )
    return exact.quantize(SIX, rounding=ROUND_HALF_UP)


PRICE = {
    "input_per_million": "0.5",
    "output_per_million": "1.5",
    "per_request": "0.001",
    "per_second": "0.0125",
}


def test_a_call_costs_its_tokens_request_and_seconds(owner, org, free_plan, echo):
    prices.set_price(echo, **PRICE)
    prediction = run(org, owner)
    lifecycle.claim(prediction.id, "test-host")
    Prediction.objects.filter(pk=prediction.pk).update(
        started_at=timezone.now() - timedelta(seconds=2.5)
    )
    prediction.refresh_from_db()
    assert finish(prediction, Status.SUCCEEDED, output="x", input_tokens=1234, output_tokens=567)
    prediction.refresh_from_db()
    receipt = cost(prediction)
    seconds = Decimal(repr(prediction.predict_time)).quantize(Decimal("0.001"), ROUND_HALF_UP)
    assert receipt.seconds == seconds and seconds >= Decimal("2.5")
    assert receipt.amount == expected(1234, 567, seconds, 1, **PRICE)
    assert (receipt.input_tokens, receipt.output_tokens, receipt.requests) == (1234, 567, 1)
    # The unit prices are copied onto the receipt.
    assert receipt.output_per_million == Decimal("1.5") and receipt.currency == "usd"


def test_amounts_round_half_up_to_six_places(owner, org, free_plan, echo):
    prices.set_price(echo, input_per_million="0.5")
    prediction = run(org, owner)
    finish(prediction, Status.SUCCEEDED, output="x", input_tokens=1, output_tokens=0)
    assert cost(prediction).amount == Decimal("0.000001")  # 0.0000005 rounds up


def test_a_later_price_change_does_not_change_a_past_call(owner, org, free_plan, echo):
    prices.set_price(echo, **PRICE)
    prediction = run(org, owner)
    finish(prediction, Status.SUCCEEDED, output="x", input_tokens=100, output_tokens=50)
    before = cost(prediction).amount
    prices.set_price(echo, input_per_million="99", per_request="5")
    assert cost(prediction).amount == before == expected(100, 50, Decimal(0), 1, **PRICE)


def test_a_call_is_priced_as_of_its_creation_not_its_settlement(owner, org, free_plan, echo):
    prices.set_price(echo, per_request="0.01")
    prediction = run(org, owner)
    prices.set_price(echo, per_request="0.02")  # while the call runs
    finish(prediction, Status.SUCCEEDED, output="x", input_tokens=3, output_tokens=3)
    assert cost(prediction).amount == Decimal("0.01")
    assert cost(run_and_finish(org, owner)).amount == Decimal("0.02")


def run_and_finish(org, owner, **tokens) -> Prediction:
    prediction = run(org, owner)
    counts = {"input_tokens": 3, "output_tokens": 3, **tokens}
    finish(prediction, Status.SUCCEEDED, output="x", **counts)
    return prediction


def test_a_price_effective_in_the_future_does_not_apply_yet(owner, org, free_plan, echo):
    prices.set_price(echo, per_request="0.01")
    prices.set_price(echo, per_request="1", effective_from=timezone.now() + timedelta(hours=1))
    assert cost(run_and_finish(org, owner)).amount == Decimal("0.01")


def test_a_listing_without_a_price_costs_nothing(owner, org, free_plan):
    receipt = cost(run_and_finish(org, owner))
    assert receipt.amount == 0 and receipt.price is None


def test_a_call_without_output_is_not_a_request(owner, org, free_plan, echo):
    prices.set_price(echo, input_per_million="2", per_request="0.5")
    failed = run(org, owner)
    finish(failed, Status.FAILED, error="boom", input_tokens=10)
    assert (cost(failed).requests, cost(failed).amount) == (0, Decimal("0.00002"))


def test_a_run_of_calls_sums_exactly(owner, org, free_plan, echo):
    price = {"input_per_million": "0.333333", "output_per_million": "1.777777"}
    prices.set_price(echo, **price)
    tokens = [(7, 11), (13, 17), (1, 0), (999, 1), (250, 333), (42, 42), (5, 123)]
    for inp, out in tokens:
        run_and_finish(org, owner, input_tokens=inp, output_tokens=out)
    amounts = list(CallCost.objects.filter(org=org).values_list("amount", flat=True))
    assert sum(amounts) == sum(expected(i, o, Decimal(0), 1, **price) for i, o in tokens)
    assert all(isinstance(amount, Decimal) for amount in amounts)


def test_the_prediction_shows_its_cost_once_terminal(
    owner, org, free_plan, echo, token_for, api_client
):
    prices.set_price(echo, input_per_million="0.5", output_per_million="1.5", per_request="0.001")
    client = api_client(token_for(org))
    created = client.post(
        "/api/v1/predictions",
        {"model": "echo", "input": {"prompt": "hi " * 1000, "max_new_tokens": 1024}},
        content_type="application/json",
    ).json()
    assert created["cost"] is None
    url = f"/api/v1/predictions/{created['id']}"
    assert client.get(url).json()["cost"] is None
    prediction = Prediction.objects.get(pk=created["id"])
    finish(prediction, Status.SUCCEEDED, output="hi", input_tokens=1000, output_tokens=1000)
    assert client.get(url).json()["cost"] == {
        "amount": "0.003",
        "currency": "usd",
        "billed": {"input_tokens": 1000, "output_tokens": 1000, "seconds": "0", "requests": 1},
        "generated_output_tokens": 1000,
        "paid_from": [{"source": "plan", "amount": "0.003"}],
    }
    listed = client.get("/api/v1/predictions").json()["results"]
    assert listed[0]["cost"]["amount"] == "0.003"


def test_overage_pays_what_the_allowance_no_longer_covers(owner, org, pro_plan, echo):
    Subscription.objects.create(org=org, plan=pro_plan, status="active")
    prices.set_price(echo, input_per_million="10", output_per_million="10")
    # Each call reserves its worst case (3,025 tokens, $0.03025) from the allowance first.
    pro_plan.allowance = Decimal("0.031")
    pro_plan.save()
    first = run_and_finish(org, owner, input_tokens=10, output_tokens=80)  # within
    second = run_and_finish(org, owner, input_tokens=10, output_tokens=80)
    assert (cost(first).paid_by_plan, cost(first).paid_as_overage) == (Decimal("0.0009"), 0)
    receipt = cost(second)
    # 0.031 - 0.0009 = 0.0301 left: the allowance still covers the whole of it.
    assert receipt.paid_by_plan == Decimal("0.0009") and receipt.paid_as_overage == 0
    third = run(org, owner)  # 0.0292 left of the allowance, the rest of 0.03025 is overage
    finish(third, Status.SUCCEEDED, output="x", input_tokens=2000, output_tokens=1000)
    receipt = cost(third)
    assert (receipt.paid_by_plan, receipt.paid_as_overage) == (Decimal("0.0292"), Decimal("0.0008"))
    assert receipt.paid_by_plan + receipt.paid_as_overage == receipt.amount == Decimal("0.03")


def test_with_billing_off_nobody_pays(owner, org, listings):
    prices.set_price(listings["echo"], per_request="0.01")
    receipt = cost(run_and_finish(org, owner))
    assert receipt.amount == Decimal("0.01")
    assert (receipt.paid_by_plan, receipt.paid_as_overage) == (0, 0)


def test_the_done_event_carries_the_cost(owner, org, free_plan, echo):
    """Streams, WebSockets and webhooks all send the final prediction of the `done` event."""
    prices.set_price(echo, per_request="0.002")
    prediction = run_and_finish(org, owner)
    done = [e for e in events.read_after(prediction.id, 0) if e.type == events.TERMINAL_EVENT]
    assert done[0].data["cost"]["amount"] == "0.002"
    assert done[0].data["cost"]["paid_from"] == [{"source": "plan", "amount": "0.002"}]


def test_the_prediction_page_shows_the_cost_and_who_paid(owner, org, free_plan, echo, client_for):
    prices.set_price(echo, per_request="0.002")
    prediction = run(org, owner)
    page = client_for(owner).get(f"/predictions/{prediction.id}/").content.decode()
    assert "when it finishes" in page
    finish(
        prediction, Status.CANCELED, output="x", input_tokens=3, output_tokens=5,
        delivered_output_tokens=4,
    )  # fmt: skip
    page = client_for(owner).get(f"/predictions/{prediction.id}/").content.decode()
    assert "0.002 USD" in page and "paid by plan 0.002" in page
    assert "3 input and 4 output tokens (5 generated" in page
