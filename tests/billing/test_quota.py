"""Entitlement and quota at admission, settlement at the end, through the real pipeline
functions (inference.services.admit / finish, the reaper) on PostgreSQL and Redis."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.utils import timezone

from billing.models import Subscription, UsagePeriod, UsageRecord
from inference import reaper
from inference.models import Prediction, Status
from inference.runners import get_runner
from inference.services import PredictionRequest, admit, finish
from portal import services
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


@pytest.mark.django_db
def test_reservation_covers_actual_usage_and_settles_to_it(owner, org, free_plan):
    # More words than max_new_tokens: the call generates all the tokens it may.
    words = "the quick brown fox jumps over the lazy dog " * 20
    prediction = run(org, owner, prompt=words, max_new_tokens=100, tokens_per_second=0)
    record = UsageRecord.objects.get(prediction=prediction)
    assert (period(org).requests_reserved, period(org).tokens_reserved) == (
        1,
        record.reserved_tokens,
    )
    input_tokens, output_tokens = run_for_real(prediction)
    assert output_tokens == 100
    assert record.reserved_tokens >= input_tokens + output_tokens

    assert finish(prediction, Status.SUCCEEDED, input_tokens=input_tokens, output_tokens=100)
    p = period(org)
    assert (p.requests_reserved, p.tokens_reserved) == (0, 0)
    used = (1, input_tokens + 100, input_tokens, 100)
    assert (p.requests_used, p.tokens_used, p.input_tokens, p.output_tokens) == used
    record.refresh_from_db()
    assert (record.requests, record.input_tokens, record.output_tokens) == (1, input_tokens, 100)
    assert record.settled_at is not None


@pytest.mark.django_db
def test_failure_and_cancel_without_output_count_no_request(owner, org, free_plan):
    failed = run(org, owner)
    canceled = run(org, owner)
    finish(failed, Status.FAILED, error="boom")
    # Canceled after the prompt was read, before the first token.
    finish(canceled, Status.CANCELED, input_tokens=4, output_tokens=0)
    p = period(org)
    assert (p.requests_reserved, p.tokens_reserved) == (0, 0)
    assert (p.requests_used, p.tokens_used) == (0, 4)
    assert UsageRecord.objects.get(prediction=failed).requests == 0


@pytest.mark.django_db
def test_cancel_after_output_counts_one_request_and_the_delivered_tokens(owner, org, free_plan):
    """A stream cut off after 9 of 10 tokens was a request: the client got its output."""
    canceled = run(org, owner)
    finish(canceled, Status.CANCELED, output="a b c", input_tokens=4, output_tokens=9)
    record = UsageRecord.objects.get(prediction=canceled)
    assert (record.requests, record.input_tokens, record.output_tokens) == (1, 4, 9)
    p = period(org)
    assert (p.requests_used, p.tokens_used, p.requests_reserved) == (1, 13, 0)


@pytest.mark.django_db
def test_failure_after_output_counts_one_request(owner, org, free_plan):
    failed = run(org, owner)
    finish(failed, Status.FAILED, error="boom", output="partial", input_tokens=4, output_tokens=3)
    assert UsageRecord.objects.get(prediction=failed).requests == 1
    assert period(org).requests_used == 1


@pytest.mark.django_db
def test_settle_happens_once_even_if_finish_is_repeated(owner, org, free_plan):
    prediction = run(org, owner)
    assert finish(prediction, Status.SUCCEEDED, input_tokens=3, output_tokens=3)
    assert not finish(prediction, Status.FAILED, error="late")
    assert period(org).requests_used == 1
    assert period(org).tokens_used == 6


@pytest.mark.django_db
def test_text_generation_without_max_new_tokens_reserves_what_the_default_can_use(
    owner, org, free_plan, echo
):
    # Longer than the listing's default max_new_tokens allows to echo (up to the context).
    words = " ".join(["w"] * (echo.default_params["max_new_tokens"] // 2))
    data = {"prompt": words, "tokens_per_second": 0}
    prediction = admit(principal(org, owner), PredictionRequest("echo", data))
    reserved = UsageRecord.objects.get(prediction=prediction).reserved_tokens
    input_tokens, output_tokens = run_for_real(prediction)
    assert output_tokens > input_tokens // 2  # the default let it generate at length
    assert reserved >= input_tokens + output_tokens


@pytest.mark.django_db
def test_exhausted_quota_without_overage_is_402(owner, org, free_plan):
    free_plan.included_requests = 2
    free_plan.save()
    run(org, owner)
    run(org, owner)
    with pytest.raises(PaymentRequired) as caught:
        run(org, owner)
    assert caught.value.code == "quota_exhausted"
    assert "requests" in caught.value.message
    assert Prediction.objects.filter(org=org).count() == 2


@pytest.mark.django_db
def test_token_quota_counts_reservations_in_flight(owner, org, free_plan):
    free_plan.included_tokens = 30
    free_plan.save()
    run(org, owner, prompt="abc", max_new_tokens=20)  # 22 reserved
    with pytest.raises(PaymentRequired) as caught:
        run(org, owner, prompt="abc", max_new_tokens=20)
    assert "tokens" in caught.value.message


@pytest.mark.django_db
def test_overage_plan_admits_beyond_the_quota_and_meters_the_excess(owner, org, pro_plan):
    Subscription.objects.create(org=org, plan=pro_plan, status="active")
    pro_plan.included_tokens = 100
    pro_plan.save()
    first = run(org, owner, max_new_tokens=90)
    second = run(org, owner, max_new_tokens=90)  # beyond the 100 included: still admitted
    finish(first, Status.SUCCEEDED, input_tokens=10, output_tokens=80)  # 90: within
    finish(second, Status.SUCCEEDED, input_tokens=10, output_tokens=80)  # 80 beyond
    records = {r.prediction_id: r for r in UsageRecord.objects.all()}
    assert records[first.id].overage_tokens == 0
    assert records[second.id].overage_tokens == 80
    assert records[second.id].cost == Decimal("0.04")  # 80 tokens at $0.50 / 1K
    assert period(org).overage_tokens == 80


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
def test_without_plans_billing_is_off_but_usage_is_recorded(owner, org, listings):
    prediction = run(org, owner)
    finish(prediction, Status.SUCCEEDED, input_tokens=2, output_tokens=5)
    assert UsageRecord.objects.get(prediction=prediction).output_tokens == 5


@pytest.mark.django_db
def test_canceled_subscription_falls_back_to_free(owner, org, free_plan, pro_plan):
    Subscription.objects.create(org=org, plan=pro_plan, status="canceled")
    with pytest.raises(PaymentRequired) as caught:
        run(org, owner, model="smollm2-135m-instruct", prompt="hi")
    assert caught.value.code == "model_not_in_plan"
    assert run(org, owner).status == Status.STARTING


@pytest.mark.django_db
def test_a_team_whose_subscription_ended_needs_a_new_one(owner, free_plan, pro_plan):
    team = services.create_org("Lapsed team", owner)
    Subscription.objects.create(org=team, plan=pro_plan, status="active")
    assert run(team, owner).status == Status.STARTING
    Subscription.objects.filter(org=team).update(status="canceled")
    with pytest.raises(PaymentRequired) as caught:
        run(team, owner)
    assert caught.value.code == "subscription_required"


@pytest.mark.django_db
def test_worker_crash_does_not_leak_the_reservation(owner, org, free_plan):
    """A worker that died after claiming: the reaper fails it via finish(), which settles."""
    prediction = run(org, owner, max_new_tokens=50)
    Prediction.objects.filter(pk=prediction.pk).update(
        status=Status.PROCESSING,
        started_at=timezone.now() - timedelta(minutes=5),
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert period(org).tokens_reserved > 0
    assert reaper.reap() == 1
    p = period(org)
    assert (p.requests_reserved, p.tokens_reserved, p.requests_used) == (0, 0, 0)
    assert UsageRecord.objects.get(prediction=prediction).settled_at is not None


@pytest.mark.django_db(transaction=True)
def test_200_simultaneous_admissions_against_a_quota_of_50(owner, org, free_plan):
    clients = 200
    barrier = threading.Barrier(clients)
    user = principal(org, owner)

    def attempt(i: int) -> Prediction | int:
        try:
            barrier.wait()
            return admit(
                user, PredictionRequest("echo", {"prompt": f"hi {i}", "max_new_tokens": 5})
            )
        except PaymentRequired as exc:
            return exc.status
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(attempt, range(clients)))
    admitted = [r for r in results if isinstance(r, Prediction)]
    assert len(admitted) == 50
    assert results.count(402) == 150
    assert period(org).requests_reserved == 50

    def settle(prediction: Prediction) -> None:
        try:
            finish(prediction, Status.SUCCEEDED, input_tokens=2, output_tokens=5)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(settle, admitted))
    p = period(org)
    assert (p.requests_used, p.requests_reserved, p.tokens_reserved) == (50, 0, 0)
    assert p.tokens_used == 50 * 7
    assert UsageRecord.objects.filter(org=org, settled_at__isnull=False).count() == 50
