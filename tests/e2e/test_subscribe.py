"""An owner subscribes to Pro: pricing page -> Stripe Checkout (a recording fake that the
web process calls) -> Stripe's signed `checkout.session.completed` webhook -> the
dashboard and the billing page show the new plan."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from playwright.sync_api import expect

from billing.models import Customer, EventStatus, Plan, Subscription
from portal.models import Organization
from tests.billing.conftest import STRIPE_KEY, FakeStripe, make_event, sign
from tests.e2e.conftest import log_in, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SESSION_ID = "cs_test_e2e"
# Where Stripe would host the payment page; the fake serves it, so the browser lands.
HOSTED_PATH = f"/c/pay/{SESSION_ID}"


def sell_pro() -> Plan:
    """The demo Pro plan with Stripe prices, as `manage.py sync_plans` would leave it."""
    pro = Plan.objects.get(slug="pro")
    pro.stripe_price_id, pro.stripe_overage_price_id = "price_e2e_pro", "price_e2e_overage"
    pro.save(update_fields=["stripe_price_id", "stripe_overage_price_id"])
    return pro


def prepare_stripe(fake: FakeStripe) -> str:
    fake.requests.clear()
    fake.responses.clear()
    checkout_url = fake.url + HOSTED_PATH
    fake.respond("POST", "/v1/customers", 200, {"id": "cus_e2e", "object": "customer"})
    session = {"id": SESSION_ID, "object": "checkout.session", "url": checkout_url}
    fake.respond("POST", "/v1/checkout/sessions", 200, session)
    fake.respond("GET", HOSTED_PATH, 200, {"page": "Stripe Checkout (fake)"})
    # The billing page lists the customer's invoices from Stripe.
    invoice = {
        "id": "in_e2e", "object": "invoice", "number": "E2E-0001", "status": "paid",
        "total": 0, "currency": "usd", "created": int(time.time()),
        "hosted_invoice_url": f"{fake.url}/i/in_e2e",
    }  # fmt: skip
    fake.respond("GET", "/v1/invoices", 200, {"object": "list", "data": [invoice]})
    return checkout_url


def post_signed(base_url: str, event: dict) -> httpx.Response:
    body = json.dumps(event)
    return httpx.post(
        f"{base_url}/billing/stripe/webhook/",
        content=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": sign(body)},
        timeout=30,
    )


@pytest.mark.timeout(180)
def test_subscribe_through_checkout_and_webhook(page, live, fake_stripe, owner, catalog):
    pro = sell_pro()
    checkout_url = prepare_stripe(fake_stripe)
    org = Organization.objects.get(memberships__user=owner)
    log_in(page, owner.email)
    expect(page.locator("#dashboard-plan-name")).to_have_text("Free")

    page.click("nav >> text=Pricing")
    screenshot(page, "pricing")
    page.get_by_role("button", name="Subscribe to Pro").click()
    page.wait_for_url(checkout_url)

    (customer,) = fake_stripe.calls("/v1/customers")
    assert customer.headers["Idempotency-Key"] == f"portal-customer-org-{org.pk}"
    (session,) = fake_stripe.calls("/v1/checkout/sessions")
    assert session.method == "POST"
    assert session.headers["Authorization"] == f"Bearer {STRIPE_KEY}"
    assert session.form == {
        "mode": ["subscription"],
        "customer": ["cus_e2e"],
        "client_reference_id": [str(org.pk)],
        "line_items[0][price]": ["price_e2e_pro"],
        "line_items[0][quantity]": ["1"],
        "line_items[1][price]": ["price_e2e_overage"],
        "metadata[org]": [str(org.pk)],
        "metadata[plan]": ["pro"],
        "subscription_data[metadata][org]": [str(org.pk)],
        "subscription_data[metadata][plan]": ["pro"],
        "subscription_data[trial_period_days]": [str(pro.trial_days)],
        "success_url": [f"{live.base_url}/billing/success/?session_id={{CHECKOUT_SESSION_ID}}"],
        "cancel_url": [f"{live.base_url}/billing/cancel/"],
    }
    assert [r.method for r in fake_stripe.calls(HOSTED_PATH)] == ["GET"]  # the browser
    assert Customer.objects.get(org=org).stripe_customer_id == "cus_e2e"

    # Stripe reports the completed checkout; the plan changes on our side.
    completed = {
        "id": SESSION_ID, "object": "checkout.session", "mode": "subscription",
        "client_reference_id": str(org.pk), "customer": "cus_e2e", "subscription": "sub_e2e",
        "metadata": {"org": str(org.pk), "plan": "pro"}, "payment_status": "paid",
    }  # fmt: skip
    answer = post_signed(live.base_url, make_event("checkout.session.completed", completed))
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == EventStatus.PROCESSED
    assert Subscription.objects.get(org=org).plan == pro

    # Stripe sends the customer back to the success page, then on to the dashboard.
    page.goto(f"/billing/success/?session_id={SESSION_ID}")
    expect(page.locator("main h1")).to_have_text("Thank you")
    page.click("nav >> text=Dashboard")
    expect(page.locator("#dashboard-plan-name")).to_have_text("Pro")
    screenshot(page, "dashboard")
    page.click("nav >> text=Billing")
    expect(page.locator("#plan-heading + p")).to_contain_text("Pro active")
    expect(page.get_by_role("button", name="Manage billing")).to_be_visible()
    expect(page.locator("tbody tr", has_text="E2E-0001")).to_contain_text("paid")
    screenshot(page, "billing")
