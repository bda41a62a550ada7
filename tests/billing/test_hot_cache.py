"""What admission reads of plans, subscriptions, prices and token caps comes from the
process's cache (no query), and every write through the models, the admin's included,
is seen by the next lookup in every process: the write bumps a generation in Redis."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from billing import caps, plans, prices
from billing.models import Subscription
from portal import hotcache, services

pytestmark = pytest.mark.django_db(transaction=True)


def _queries(fn) -> int:
    with CaptureQueriesContext(connection) as captured:
        fn()
    return len(captured)


def test_a_plan_state_read_twice_queries_once_and_sees_a_subscription_change(
    org, free_plan, pro_plan, listings
):
    assert plans.plan_state(org).plan == free_plan
    assert plans.includes(free_plan, listings["echo"])
    assert _queries(lambda: plans.plan_state(org)) == 0
    assert _queries(lambda: plans.includes(free_plan, listings["echo"])) == 0

    sub = Subscription.objects.create(org=org, plan=pro_plan, status="active")
    assert plans.plan_state(org).plan == pro_plan
    sub.status = "canceled"
    sub.save()
    assert plans.plan_state(org).plan == free_plan


def test_a_change_to_the_plans_models_is_seen_at_once(org, free_plan, listings):
    embedder = listings["all-minilm-l6-v2"]
    assert plans.includes(free_plan, embedder)
    free_plan.included_models.remove(embedder)
    assert not plans.includes(free_plan, embedder)


def test_a_new_price_is_seen_at_once_and_the_old_one_still_prices_the_past(listings):
    echo = listings["echo"]
    first = prices.set_price(echo, per_request="0.01")
    assert prices.price_at(echo) == first
    assert _queries(lambda: prices.price_at(echo)) == 0
    second = prices.set_price(echo, per_request="0.02")
    assert prices.price_at(echo) == second
    assert prices.price_at(echo, first.effective_from) == first


def test_a_token_cap_change_is_seen_at_once(org, owner, free_plan):
    from billing import metering

    token = services.issue_token(org, owner, "capped").token
    state = plans.plan_state(org)
    assert metering._token_cap(token.pk, state) is None
    caps.set_org_token_spend_cap(org, token.pk, "2", owner)
    assert metering._token_cap(token.pk, plans.plan_state(org)).amount == Decimal(2)


def test_a_rolled_back_write_leaves_no_stale_entry(org, free_plan, pro_plan):
    with pytest.raises(RuntimeError), transaction.atomic():
        Subscription.objects.create(org=org, plan=pro_plan, status="active")
        assert plans.plan_state(org).plan == pro_plan  # cached inside the transaction
        raise RuntimeError
    assert plans.plan_state(org).plan == free_plan


def test_without_redis_lookups_read_the_database(settings, org, free_plan):
    from tests.livestack import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.REDIS_OUTAGE_TOLERANCE_SECONDS = 0
    assert hotcache.stamp("billing") is None
    assert plans.plan_state(org).plan == free_plan
