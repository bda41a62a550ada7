"""Stripe webhooks through the real view, correctly signed (or deliberately not)."""

from __future__ import annotations

import json
import random
import time

import pytest

from billing import plans
from billing.models import Customer, EventStatus, StripeEvent, Subscription
from billing.stripe_events import HANDLERS
from tests.billing.conftest import make_event

pytestmark = pytest.mark.django_db
NOW = int(time.time())
CREATED, UPDATED = "customer.subscription.created", "customer.subscription.updated"
DELETED = "customer.subscription.deleted"


def sub_obj(org, plan, status: str = "active", sub_id: str = "sub_1", **extra) -> dict:
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": "cus_1",
        "status": status,
        "metadata": {"org": str(org.pk), "plan": plan.slug},
        "cancel_at_period_end": False,
        "items": {
            "data": [
                {
                    "price": {"id": plan.stripe_price_id},
                    "current_period_start": NOW - 86400,
                    "current_period_end": NOW + 29 * 86400,
                }
            ]
        },
        **extra,
    }


def assert_400(response, code: str) -> None:
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


# --- Negatives ------------------------------------------------------------------------


def test_missing_signature_is_400(client, org, pro_plan):
    body = json.dumps(make_event(CREATED, sub_obj(org, pro_plan)))
    response = client.post("/billing/stripe/webhook/", body, content_type="application/json")
    assert_400(response, "missing_signature")
    assert not StripeEvent.objects.exists()


def test_bad_signature_is_400(post_event, org, pro_plan):
    event = make_event(CREATED, sub_obj(org, pro_plan))
    assert_400(post_event(event, secret="whsec_wrong"), "bad_signature")
    assert not Subscription.objects.exists()


def test_stale_timestamp_is_400(post_event, org, pro_plan):
    event = make_event(CREATED, sub_obj(org, pro_plan))
    assert_400(post_event(event, timestamp=int(time.time()) - 3600), "bad_signature")
    assert not Subscription.objects.exists()


@pytest.mark.parametrize("body", ["{not json", "", "[1, 2]", '{"id": 5}'])
def test_bad_json_is_400(post_event, body):
    response = post_event(body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"malformed_json", "malformed_event"}
    assert not StripeEvent.objects.exists()


def test_unknown_type_is_200_and_recorded_as_ignored(post_event):
    response = post_event(make_event("customer.tax_id.created", {"id": "txi_1"}, id_="evt_u"))
    assert response.status_code == 200
    assert StripeEvent.objects.get(stripe_event_id="evt_u").status == EventStatus.IGNORED


def test_get_is_405(client):
    assert client.get("/billing/stripe/webhook/").status_code == 405


# --- Effects --------------------------------------------------------------------------


def test_same_event_five_times_has_one_effect(post_event, org, pro_plan):
    event = make_event(CREATED, sub_obj(org, pro_plan), id_="evt_dup")
    outcomes = [post_event(event).json()["outcome"] for _ in range(5)]
    assert outcomes[0] == EventStatus.PROCESSED
    assert outcomes[1:] == ["duplicate"] * 4
    assert StripeEvent.objects.filter(stripe_event_id="evt_dup").count() == 1
    sub = Subscription.objects.get(org=org)
    assert (sub.plan, sub.status, sub.stripe_subscription_id) == (pro_plan, "active", "sub_1")
    from portal.models import AuditLog

    assert AuditLog.objects.filter(org=org, action="billing.subscription_synced").count() == 1


def test_checkout_completed_links_the_customer_and_the_plan(post_event, org, pro_plan):
    session = {
        "id": "cs_1", "object": "checkout.session", "mode": "subscription",
        "client_reference_id": str(org.pk), "customer": "cus_9", "subscription": "sub_9",
        "metadata": {"org": str(org.pk), "plan": "pro"}, "payment_status": "paid",
    }  # fmt: skip
    assert post_event(make_event("checkout.session.completed", session)).status_code == 200
    assert Customer.objects.get(org=org).stripe_customer_id == "cus_9"
    assert plans.plan_state(org).plan == pro_plan


def test_updated_before_created_ends_in_the_updated_state(post_event, org, pro_plan, team_plan):
    created = make_event(
        "customer.subscription.created", sub_obj(org, pro_plan, status="trialing"), created=NOW
    )
    updated = make_event(UPDATED, sub_obj(org, team_plan), created=NOW + 10)
    post_event(updated)
    assert post_event(created).json()["outcome"] == EventStatus.PROCESSED
    sub = Subscription.objects.get(org=org)
    assert (sub.plan, sub.status) == (team_plan, "active")
    assert "stale" in StripeEvent.objects.get(stripe_event_id=created["id"]).outcome


@pytest.mark.parametrize("seed", range(6))
def test_shuffled_lifecycle_ends_canceled_on_free(
    seed, post_event, org, free_plan, pro_plan, team_plan
):
    events = [
        make_event(CREATED, sub_obj(org, pro_plan, "trialing"), created=NOW),
        make_event(UPDATED, sub_obj(org, pro_plan), created=NOW + 5),
        make_event("invoice.payment_failed", {"id": "in_1", "subscription": "sub_1"}, NOW + 6),
        make_event(UPDATED, sub_obj(org, team_plan, "past_due"), created=NOW + 7),
        make_event("invoice.paid", {"id": "in_2", "subscription": "sub_1"}, created=NOW + 8),
        make_event(DELETED, sub_obj(org, team_plan, "canceled"), created=NOW + 9),
    ]  # fmt: skip
    random.Random(seed).shuffle(events)
    for event in events:
        assert post_event(event).status_code == 200
    sub = Subscription.objects.get(org=org)
    assert (sub.status, sub.plan) == ("canceled", team_plan)
    assert plans.plan_state(org).plan == free_plan


@pytest.mark.parametrize("seed", range(4))
def test_shuffled_renewal_ends_active_on_the_latest_plan(
    seed, post_event, org, pro_plan, team_plan
):
    events = [
        make_event(CREATED, sub_obj(org, pro_plan, "incomplete"), created=NOW),
        make_event("invoice.paid", {"id": "in_1", "subscription": "sub_1"}, created=NOW + 1),
        make_event(UPDATED, sub_obj(org, pro_plan), created=NOW + 2),
        make_event(UPDATED, sub_obj(org, team_plan), created=NOW + 3),
    ]  # fmt: skip
    random.Random(seed).shuffle(events)
    for event in events:
        post_event(event)
    assert plans.plan_state(org).plan == team_plan


def test_past_due_keeps_the_plan_during_grace_then_falls_back(
    post_event, org, free_plan, pro_plan, settings
):
    post_event(make_event(CREATED, sub_obj(org, pro_plan), created=NOW))
    post_event(make_event("invoice.payment_failed", {"id": "in_1", "subscription": "sub_1"}))
    state = plans.plan_state(org)
    assert (state.plan, state.in_grace) == (pro_plan, True)
    sub = Subscription.objects.get(org=org)
    sub.past_due_since = plans.timezone.now() - plans.grace_period() * 2
    sub.save()
    assert plans.plan_state(org).plan == free_plan


def test_an_old_subscriptions_deletion_does_not_cancel_the_new_one(post_event, org, pro_plan):
    post_event(make_event(CREATED, sub_obj(org, pro_plan, sub_id="sub_new")))
    post_event(make_event(DELETED, sub_obj(org, pro_plan, "canceled", "sub_old")))
    sub = Subscription.objects.get(org=org)
    assert (sub.stripe_subscription_id, sub.status) == ("sub_new", "active")


def test_unknown_customer_is_acknowledged_without_effect(post_event, pro_plan):
    obj = {**sub_obj(type("O", (), {"pk": 999999})(), pro_plan), "metadata": {}}
    response = post_event(make_event(CREATED, obj))
    assert response.status_code == 200
    assert not Subscription.objects.exists()


def test_failed_handler_answers_500_records_the_error_and_a_retry_applies(
    post_event, org, pro_plan, monkeypatch
):
    event = make_event(CREATED, sub_obj(org, pro_plan), id_="evt_f")

    def broken(obj, ctx):
        raise RuntimeError("database hiccup")

    monkeypatch.setitem(HANDLERS, "customer.subscription.created", broken)
    response = post_event(event)
    assert response.status_code == 500
    assert "hiccup" not in response.content.decode()
    row = StripeEvent.objects.get(stripe_event_id="evt_f")
    assert row.status == EventStatus.FAILED and "database hiccup" in row.error
    assert not Subscription.objects.exists()

    monkeypatch.undo()
    assert post_event(event).status_code == 200
    row.refresh_from_db()
    assert (row.status, row.attempts) == (EventStatus.PROCESSED, 2)
    assert Subscription.objects.get(org=org).plan == pro_plan
