"""Entitlement and quota at admission, settlement at the end, through the real pipeline
functions (inference.admission.admit, inference.lifecycle.finish, the reaper) on
PostgreSQL and Redis."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.db.models import Sum
from django.utils import timezone

from billing import caps, costs, credits, metering, prices
from billing.models import (
    BillingAlert,
    CallCost,
    CreditEntry,
    ListingPrice,
    Subscription,
    UsagePeriod,
    UsageRecord,
)
from inference import reaper
from inference.admission import PredictionRequest, admit
from inference.lifecycle import finish
from inference.models import Prediction, Status
from inference.runners import get_runner
from portal import services as portal_services
from portal.auth import ALL_SCOPES, Principal
from portal.errors import PaymentRequired, RateLimited
from tests.conftest import fresh_window
from tests.inference.helpers import collect

pytestmark = pytest.mark.usefixtures("worker_present")


@pytest.fixture
def org(owner):
    """The owner's personal workspace: the free plan's allowance comes with it, while a
    team workspace has none until it subscribes (tests/security/test_service_rules.py)."""
    return owner.memberships.get(org__is_personal=True).org


def principal(org, user) -> Principal:
    return Principal(org=org, user=user, token=None, scopes=ALL_SCOPES)


def run(org, user, model: str = "echo", **input_) -> Prediction:
    data = {"prompt": "hello there", "max_new_tokens": 10, **input_}
    return admit(principal(org, user), PredictionRequest(model=model, input=data))


def period(org) -> UsagePeriod:
    return UsagePeriod.objects.get(org=org)


def run_for_real(prediction: Prediction) -> tuple[int, int]:
    """Runs the prediction's model on its input in process, as a worker would; returns the
    (input, output) tokens it really used."""
    spec = prediction.model.runtime_spec
    _, result = collect(get_runner(prediction.model.task).run(spec, prediction.input))
    return result.metrics.input_tokens, result.metrics.output_tokens


@pytest.mark.django_db
def test_model_outside_the_plan_is_402_naming_the_plans_that_include_it(
    owner, org, free_plan, pro_plan, team_plan
):
    with pytest.raises(PaymentRequired) as caught:
        run(org, owner, model="smollm2-135m-instruct", prompt="hi")
    assert caught.value.status == 402
    assert caught.value.code == "model_not_in_plan"
    assert "Pro" in caught.value.message and "Team" in caught.value.message
    assert "Free" in caught.value.message
    assert not Prediction.objects.filter(org=org).exists()


# Echo priced so that every part shows: $0.001 per input token, $0.002 per output token,
# $0.001 per request. run()'s default input ("hello there", 10 new tokens) estimates 4
# input tokens, so its worst case is 0.004 + 0.020 + 0.001 = 0.025.
WORST = Decimal("0.025")


def cost(prediction: Prediction) -> CallCost:
    return CallCost.objects.get(prediction=prediction)


def money(*values: str) -> tuple[Decimal, ...]:
    return tuple(Decimal(value) for value in values)


@pytest.mark.django_db
def test_the_worst_case_is_reserved_and_settles_to_what_was_delivered(
    owner, org, free_plan, priced
):
    prediction = run(org, owner)
    record = UsageRecord.objects.get(prediction=prediction)
    assert (record.max_cost, record.reserved_allowance) == (WORST, WORST)
    assert period(org).allowance_reserved == WORST

    assert finish(prediction, Status.SUCCEEDED, input_tokens=3, output_tokens=5)
    p = period(org)
    # 3 x 0.001 + 5 x 0.002 + 0.001
    assert (p.allowance_reserved, p.allowance_used) == money("0", "0.014")
    assert (p.requests, p.input_tokens, p.output_tokens) == (1, 3, 5)
    receipt = cost(prediction)
    assert (receipt.amount, receipt.paid_by_plan, receipt.paid_by_credits) == money(
        "0.014", "0.014", "0"
    )
    # The reservation entry is never rewritten: the settlement is its own entry.
    record.refresh_from_db()
    assert (record.max_cost, record.reserved_allowance) == (WORST, WORST)


@pytest.mark.django_db
def test_failure_and_cancel_without_output_count_no_request(owner, org, free_plan, priced):
    failed = run(org, owner)
    canceled = run(org, owner)
    finish(failed, Status.FAILED, error="boom")
    # Canceled after the prompt was read, before the first token.
    finish(canceled, Status.CANCELED, input_tokens=4, output_tokens=0)
    p = period(org)
    assert (p.allowance_reserved, p.requests, p.input_tokens) == (Decimal(0), 0, 4)
    assert p.allowance_used == Decimal("0.004")
    assert cost(failed).requests == 0


@pytest.mark.django_db
def test_cancel_after_output_counts_one_request_and_the_delivered_tokens(
    owner, org, free_plan, priced
):
    """A stream cut off after 9 tokens was a request: the client got its output; the
    worker counted 7 of them delivered before the cancel took effect."""
    canceled = run(org, owner)
    finish(
        canceled, Status.CANCELED, output="a b c", input_tokens=4, output_tokens=9,
        delivered_output_tokens=7,
    )  # fmt: skip
    receipt = cost(canceled)
    assert (receipt.requests, receipt.output_tokens, receipt.generated_output_tokens) == (1, 7, 9)
    assert receipt.amount == Decimal("0.019")  # 4 x 0.001 + 7 x 0.002 + 0.001


@pytest.mark.django_db
def test_failure_after_output_counts_one_request(owner, org, free_plan, priced):
    failed = run(org, owner)
    finish(failed, Status.FAILED, error="boom", output="partial", input_tokens=4, output_tokens=3)
    assert cost(failed).requests == 1
    assert period(org).requests == 1


@pytest.mark.django_db
def test_settle_happens_once_even_if_finish_is_repeated(owner, org, free_plan, priced):
    prediction = run(org, owner)
    assert finish(prediction, Status.SUCCEEDED, input_tokens=3, output_tokens=3)
    assert not finish(prediction, Status.FAILED, error="late")
    metering.settle(prediction)
    assert period(org).requests == 1
    assert period(org).allowance_used == Decimal("0.010")
    assert CallCost.objects.count() == 1


@pytest.mark.django_db
def test_a_call_is_never_charged_more_than_its_worst_case(owner, org, free_plan, priced):
    prediction = run(org, owner)
    finish(prediction, Status.SUCCEEDED, input_tokens=500, output_tokens=10)
    assert cost(prediction).amount == WORST
    assert period(org).allowance_used == WORST


@pytest.mark.django_db
def test_text_generation_without_max_new_tokens_reserves_what_the_default_can_use(
    owner, org, free_plan, echo, priced
):
    free_plan.allowance = Decimal(100)
    free_plan.save()
    # Longer than the listing's default max_new_tokens allows to echo (up to the context).
    words = " ".join(["w"] * (echo.default_params["max_new_tokens"] // 2))
    data = {"prompt": words, "tokens_per_second": 0}
    prediction = admit(principal(org, owner), PredictionRequest("echo", data))
    reserved = UsageRecord.objects.get(prediction=prediction).max_cost
    input_tokens, output_tokens = run_for_real(prediction)
    assert output_tokens > input_tokens // 2  # the default let it generate at length
    billed = costs.Billed(input_tokens, output_tokens, Decimal(0), 1)
    assert reserved >= costs.amount_for(priced, billed)


@pytest.mark.django_db
def test_a_spent_allowance_without_overage_or_credits_is_402(owner, org, free_plan, priced):
    free_plan.allowance = WORST * 2
    free_plan.save()
    run(org, owner)
    run(org, owner)
    with pytest.raises(PaymentRequired) as caught:
        run(org, owner)
    assert caught.value.code == "quota_exhausted"
    assert "allowance" in caught.value.message and "credits" in caught.value.message
    assert Prediction.objects.filter(org=org).count() == 2
    assert UsageRecord.objects.count() == 2


@pytest.mark.django_db
def test_the_allowance_counts_reservations_in_flight(owner, org, free_plan, priced):
    free_plan.allowance = Decimal("0.030")
    free_plan.save()
    first = run(org, owner)  # 0.025 held
    with pytest.raises(PaymentRequired):
        run(org, owner)
    finish(first, Status.SUCCEEDED, input_tokens=1, output_tokens=1)  # 0.004: 0.026 free
    assert run(org, owner).status == Status.STARTING


@pytest.mark.django_db
def test_overage_pays_beyond_the_allowance_at_listing_prices(owner, org, pro_plan, priced):
    Subscription.objects.create(org=org, plan=pro_plan, status="active")
    pro_plan.allowance = Decimal("0.030")
    pro_plan.save()
    first = run(org, owner)
    second = run(org, owner)  # 0.005 from the allowance, 0.020 as overage
    record = UsageRecord.objects.get(prediction=second)
    assert (record.reserved_allowance, record.reserved_overage) == money("0.005", "0.020")
    finish(first, Status.SUCCEEDED, input_tokens=4, output_tokens=10)  # 0.025
    finish(second, Status.SUCCEEDED, input_tokens=4, output_tokens=10)  # 0.025
    assert (cost(second).paid_by_plan, cost(second).paid_as_overage) == money("0.005", "0.020")
    p = period(org)
    assert (p.allowance_used, p.overage_used, p.paid_reserved) == money("0.030", "0.020", "0")
    payload = costs.cost_payload(cost(second))
    assert payload["paid_from"] == [
        {"source": "plan", "amount": "0.005"},
        {"source": "overage", "amount": "0.02"},
    ]


@pytest.mark.django_db
def test_credits_pay_after_the_allowance_and_go_down_by_what_was_delivered(
    owner, org, free_plan, priced
):
    free_plan.allowance = Decimal("0.010")
    free_plan.save()
    credits.grant_credits(org, "1")
    prediction = run(org, owner)  # 0.010 allowance + 0.015 credits held
    assert credits.account_for(org).credits_reserved == Decimal("0.015")
    finish(prediction, Status.SUCCEEDED, input_tokens=4, output_tokens=5)  # 0.015
    receipt = cost(prediction)
    assert (receipt.paid_by_plan, receipt.paid_by_credits) == money("0.010", "0.005")
    account = credits.account_for(org)
    assert (account.balance, account.credits_reserved) == money("0.995", "0")
    usage = CreditEntry.objects.get(kind="usage")
    assert (usage.amount, usage.reference) == (Decimal("-0.005"), f"usage:{prediction.id}")
    assert period(org).credits_used == Decimal("0.005")


@pytest.mark.django_db
def test_credits_pay_for_a_model_outside_the_plan(owner, org, free_plan, listings, priced):
    free_plan.included_models.set([listings["all-minilm-l6-v2"]])
    with pytest.raises(PaymentRequired) as caught:
        run(org, owner)
    assert caught.value.code == "model_not_in_plan" and "credits" in caught.value.message
    credits.grant_credits(org, "5")
    prediction = run(org, owner)
    assert UsageRecord.objects.get(prediction=prediction).reserved_allowance == 0


@pytest.mark.django_db
def test_too_few_credits_is_402_insufficient_credits(owner, org, free_plan, priced):
    free_plan.allowance = Decimal(0)
    free_plan.save()
    credits.grant_credits(org, "0.03")
    run(org, owner)
    with pytest.raises(PaymentRequired) as caught:
        run(org, owner)
    assert caught.value.code == "insufficient_credits"


@pytest.mark.django_db
def test_a_negative_balance_blocks_paid_calls_but_not_the_allowance(owner, org, free_plan, priced):
    credits.grant_credits(org, "1")
    credits.change_balance(org, Decimal("-1.5"), CreditEntry.Kind.REFUND, reference="refund:re_1")
    assert run(org, owner).status == Status.STARTING  # the allowance still pays
    free_plan.allowance = Decimal(0)
    free_plan.save()
    with pytest.raises(PaymentRequired) as caught:
        run(org, owner)
    assert caught.value.code == "credits_negative"


@pytest.mark.django_db
def test_the_org_spend_cap_counts_credits_and_overage_not_the_allowance(
    owner, org, free_plan, priced
):
    free_plan.allowance = WORST
    free_plan.save()
    credits.grant_credits(org, "10")
    caps.set_spend_cap(org, WORST * 2)
    run(org, owner)  # the allowance
    run(org, owner)  # credits
    run(org, owner)  # credits: the cap is reached exactly
    with pytest.raises(PaymentRequired) as caught:
        run(org, owner)
    assert caught.value.code == "spend_cap_reached"
    assert "organization's spend cap of $0.05" in caught.value.message


@pytest.mark.django_db
def test_a_token_spend_cap_holds_for_that_token_only(owner, org, free_plan, priced):
    free_plan.allowance = Decimal(0)
    free_plan.save()
    credits.grant_credits(org, "10")
    capped = portal_services.issue_token(org, owner, "capped").token
    other = portal_services.issue_token(org, owner, "other").token
    caps.set_token_spend_cap(capped, WORST, actor=owner)
    data = {"prompt": "hello there", "max_new_tokens": 10}

    def call(token):
        who = Principal(org=org, user=None, token=token, scopes=token.scopes)
        return admit(who, PredictionRequest("echo", data))

    call(capped)
    with pytest.raises(PaymentRequired) as caught:
        call(capped)
    assert "API token's spend cap" in caught.value.message
    assert call(other).status == Status.STARTING


@pytest.mark.django_db
def test_max_cost_refuses_a_call_whose_worst_case_is_above_it(owner, org, free_plan, priced):
    data = {"prompt": "hello there", "max_new_tokens": 10}
    request = PredictionRequest("echo", data, max_cost=Decimal("0.024999"))
    with pytest.raises(PaymentRequired) as caught:
        admit(principal(org, owner), request)
    assert (caught.value.code, caught.value.param) == ("cost_cap_exceeded", "max_cost")
    assert not Prediction.objects.exists()
    request = PredictionRequest("echo", data, max_cost=WORST)
    assert admit(principal(org, owner), request).status == Status.STARTING


@pytest.mark.django_db
def test_plan_rate_limit_is_429(owner, org, free_plan):
    free_plan.rate_limit_per_minute = 2
    free_plan.save()
    fresh_window()  # all three in one fixed window
    run(org, owner)
    run(org, owner)
    with pytest.raises(RateLimited) as caught:
        run(org, owner)
    assert caught.value.code == "plan_rate_limited"
    assert caught.value.retry_after >= 1


@pytest.mark.django_db
def test_without_plans_billing_is_off_and_nobody_pays(owner, org, listings, priced):
    prediction = run(org, owner)
    finish(prediction, Status.SUCCEEDED, input_tokens=2, output_tokens=5)
    receipt = cost(prediction)
    assert receipt.amount == Decimal("0.013")
    assert receipt.paid_by_plan == receipt.paid_by_credits == receipt.paid_as_overage == 0


@pytest.mark.django_db
def test_a_call_settles_at_the_price_it_was_admitted_at(owner, org, listings):
    """Admitted while echo had no price (free); then a price is recorded as in force since
    before the call (an operator's backdated correction). The call's receipt is at the
    price its reservation was made at, as a priced call's is (its entry names its row)."""
    prediction = run(org, owner)
    assert UsageRecord.objects.get(prediction=prediction).price is None
    backdated = prices.set_price(
        listings["echo"], input_per_million="1000", output_per_million="2000", per_request="0.001"
    )
    ListingPrice.objects.filter(pk=backdated.pk).update(
        effective_from=prediction.created_at - timedelta(minutes=1)
    )
    assert finish(prediction, Status.SUCCEEDED, input_tokens=2, output_tokens=5)
    receipt = cost(prediction)
    assert receipt.price is None
    assert (receipt.amount, receipt.input_per_million, receipt.per_request) == money("0", "0", "0")


@pytest.mark.django_db
def test_canceled_subscription_falls_back_to_free(owner, org, free_plan, pro_plan):
    Subscription.objects.create(org=org, plan=pro_plan, status="canceled")
    with pytest.raises(PaymentRequired) as caught:
        run(org, owner, model="smollm2-135m-instruct", prompt="hi")
    assert caught.value.code == "model_not_in_plan"
    assert run(org, owner).status == Status.STARTING


@pytest.mark.django_db
def test_a_team_whose_subscription_ended_needs_a_new_one_or_credits(
    owner, free_plan, pro_plan, priced
):
    team = portal_services.create_org("Lapsed team", owner)
    Subscription.objects.create(org=team, plan=pro_plan, status="active")
    assert run(team, owner).status == Status.STARTING
    sub = Subscription.objects.get(org=team)
    sub.status = "canceled"
    sub.save()
    with pytest.raises(PaymentRequired) as caught:
        run(team, owner)
    assert caught.value.code == "subscription_required"
    credits.grant_credits(team, "1")
    prediction = run(team, owner)
    assert UsageRecord.objects.get(prediction=prediction).reserved_credits == WORST


@pytest.mark.django_db
def test_worker_crash_does_not_leak_the_reservation(owner, org, free_plan, priced):
    """A worker that died after claiming: the reaper fails it via finish(), which settles."""
    credits.grant_credits(org, "1")
    free_plan.allowance = Decimal("0.01")
    free_plan.save()
    prediction = run(org, owner, max_new_tokens=50)
    Prediction.objects.filter(pk=prediction.pk).update(
        status=Status.PROCESSING,
        started_at=timezone.now() - timedelta(minutes=5),
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert period(org).paid_reserved > 0
    assert reaper.reap() == 1
    p = period(org)
    assert (p.allowance_reserved, p.paid_reserved, p.requests) == (0, 0, 0)
    assert credits.account_for(org).credits_reserved == 0
    assert cost(prediction).amount == 0


def _hammer(calls: int, attempt) -> list:
    barrier = threading.Barrier(calls)

    def one(i: int):
        try:
            barrier.wait()
            return attempt(i)
        except PaymentRequired as exc:
            return exc.code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=calls) as pool:
        return list(pool.map(one, range(calls)))


def _settle_all(predictions: list[Prediction]) -> None:
    def settle(prediction: Prediction) -> None:
        try:
            finish(prediction, Status.SUCCEEDED, input_tokens=4, output_tokens=10)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=25) as pool:
        list(pool.map(settle, predictions))


def _admit_one(org, owner):
    user = principal(org, owner)
    data = {"prompt": "hello there", "max_new_tokens": 10}
    return lambda i: admit(user, PredictionRequest("echo", data))


@pytest.mark.django_db(transaction=True)
def test_200_simultaneous_calls_against_a_spend_cap_that_allows_50(owner, org, free_plan, priced):
    free_plan.allowance = Decimal(0)
    free_plan.save()
    credits.grant_credits(org, "100")
    caps.set_spend_cap(org, WORST * 50)
    results = _hammer(200, _admit_one(org, owner))
    admitted = [r for r in results if isinstance(r, Prediction)]
    assert len(admitted) == 50
    assert results.count("spend_cap_reached") == 150
    _settle_all(admitted)
    p = period(org)
    assert p.paid_reserved == 0
    assert p.spent == WORST * 50 <= credits.account_for(org).spend_cap
    assert credits.account_for(org).balance == Decimal(100) - WORST * 50


@pytest.mark.django_db(transaction=True)
def test_200_simultaneous_calls_never_drive_credits_below_zero(owner, org, free_plan, priced):
    free_plan.allowance = Decimal(0)
    free_plan.save()
    credits.grant_credits(org, WORST * 50)
    results = _hammer(200, _admit_one(org, owner))
    admitted = [r for r in results if isinstance(r, Prediction)]
    assert len(admitted) == 50
    assert results.count("insufficient_credits") == 150
    _settle_all(admitted)
    account = credits.account_for(org)
    assert (account.balance, account.credits_reserved) == (Decimal(0), Decimal(0))
    ledger = CreditEntry.objects.filter(org=org).aggregate(total=Sum("amount"))["total"]
    assert ledger == account.balance == 0


@pytest.mark.django_db(transaction=True)
def test_200_simultaneous_calls_against_an_allowance_of_50(owner, org, free_plan, priced):
    free_plan.allowance = WORST * 50
    free_plan.save()
    results = _hammer(200, _admit_one(org, owner))
    admitted = [r for r in results if isinstance(r, Prediction)]
    assert len(admitted) == 50
    assert results.count("quota_exhausted") == 150
    _settle_all(admitted)
    p = period(org)
    assert (p.allowance_used, p.allowance_reserved, p.requests) == (WORST * 50, 0, 50)
    assert CallCost.objects.filter(org=org).aggregate(total=Sum("amount"))["total"] == WORST * 50


@pytest.mark.django_db
def test_settlement_fires_the_allowance_alerts_it_crosses(
    owner, org, free_plan, priced, django_capture_on_commit_callbacks
):
    free_plan.allowance = Decimal("0.03")
    free_plan.save()
    prediction = run(org, owner)
    with django_capture_on_commit_callbacks(execute=True):
        finish(prediction, Status.SUCCEEDED, input_tokens=4, output_tokens=10)  # 0.025: 83%
    fired = BillingAlert.objects.filter(org=org, subject="allowance")
    assert sorted(fired.values_list("threshold", flat=True)) == [50, 80]
