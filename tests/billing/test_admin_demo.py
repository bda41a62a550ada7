"""Demo plans and the operator's admin pages."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from billing.demo import load_demo_plans
from billing.models import Plan, StripeEvent, Subscription
from billing.plans import plan_state

pytestmark = pytest.mark.django_db


def test_demo_plans_give_new_orgs_a_free_plan_with_the_demo_models(listings, org):
    load_demo_plans()
    load_demo_plans()  # idempotent
    assert list(Plan.objects.values_list("slug", flat=True)) == ["free", "pro", "team"]
    free = plan_state(org).plan
    assert free.slug == "free" and free.allowance
    assert set(free.included_models.values_list("slug", flat=True)) == set(listings)


def test_load_demo_loads_plans():
    call_command("load_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert Plan.objects.filter(is_default=True).count() == 1


@pytest.fixture
def admin_client(client):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345678")
    client.force_login(admin)
    return client


def test_admin_lists_every_billing_model(admin_client, org, free_plan, pro_plan):
    Subscription.objects.create(org=org, plan=pro_plan, stripe_subscription_id="sub_a")
    event = StripeEvent.objects.create(
        stripe_event_id="evt_a", type="x", created=1, payload={}, status="failed", error="boom"
    )
    for name in ("plan", "subscription", "customer", "stripeevent", "usageperiod",
                 "usagerecord", "meterreport", "listingprice", "callcost", "billingaccount",
                 "creditentry", "tokenspendcap", "billingalert", "usagecorrection",
                 "publisheraccount", "royaltyentry", "payout", "listingplan",
                 "listingsubscription", "subscriptionusage", "subscriptioninvoice"):  # fmt: skip
        assert admin_client.get(f"/admin/billing/{name}/").status_code == 200, name
    assert b"boom" in admin_client.get(f"/admin/billing/stripeevent/{event.pk}/change/").content


def test_admin_grants_a_plan_through_the_service(admin_client, org, team_plan):
    response = admin_client.post(
        "/admin/billing/subscription/add/", {"org": org.pk, "plan": team_plan.pk}
    )
    assert response.status_code == 302
    sub = Subscription.objects.get(org=org)
    assert (sub.plan, sub.granted_by_admin, sub.status) == (team_plan, True, "active")
    assert plan_state(org).plan == team_plan


def test_admin_resync_action(admin_client, org, pro_plan, fake_stripe):
    sub = Subscription.objects.create(org=org, plan=pro_plan, status="active",
                                      stripe_subscription_id="sub_r")  # fmt: skip
    fake_stripe.respond("GET", "/v1/subscriptions/sub_r", 200, {
        "id": "sub_r", "object": "subscription", "status": "canceled", "customer": "cus_r",
        "metadata": {"org": str(org.pk)}, "items": {"data": [{"price": {"id": "price_pro"}}]},
    })  # fmt: skip
    response = admin_client.post(
        "/admin/billing/subscription/",
        {"action": "resync_from_stripe", "_selected_action": [sub.pk]},
        follow=True,
    )
    assert b"applied: pro canceled" in response.content
    sub.refresh_from_db()
    assert sub.status == "canceled"


def test_admin_grants_a_listing_plan_through_the_service(admin_client, org, outsider, echo):
    from billing.models import ListingPlan, ListingSubscription
    from portal import services as portal_services

    echo.org = portal_services.create_org("Model Makers", outsider)
    echo.save()
    plan = ListingPlan.objects.create(
        listing=echo, name="Team", monthly_price=Decimal("9"), included_usage=Decimal("1")
    )
    response = admin_client.post(
        "/admin/billing/listingsubscription/add/", {"org": org.pk, "plan": plan.pk}
    )
    assert response.status_code == 302
    sub = ListingSubscription.objects.get(org=org)
    assert (sub.listing, sub.plan, sub.status, sub.granted_by_admin) == (echo, plan, "active", True)
