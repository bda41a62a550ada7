"""A publisher sells a subscription to its model, a customer buys it and calls the model
(issue #13): the publisher onboards (up to Stripe's hosted onboarding, a recording fake),
Stripe's signed `account.updated` marks it onboarded, it schedules a pay-as-you-go price
and adds a plan on /publisher/listings/; the customer subscribes from the model page (up
to the fake Checkout), Stripe's signed events record the subscription and its paid
invoice; the customer's call is paid from the subscription, and the publisher's pages
show the call and the earning."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import pytest
from playwright.sync_api import Page, expect

from billing import prices
from billing.models import (
    EventStatus,
    ListingPlan,
    ListingSubscription,
    PublisherAccount,
    RoyaltyEntry,
)
from portal.models import Organization
from tests.billing.conftest import FakeStripe, make_event
from tests.billing.test_publisher_onboarding import account_obj
from tests.e2e.conftest import log_in, screenshot
from tests.e2e.test_subscribe import post_signed

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ACCOUNT_ID = "acct_e2e_publisher"
ONBOARDING_PATH = f"/setup/{ACCOUNT_ID}"
SESSION_ID = "cs_test_e2e_listing"
CHECKOUT_PATH = f"/c/pay/{SESSION_ID}"
PRICE_ID = "price_e2e_listing"
SUBSCRIPTION_ID = "sub_e2e_listing"
# Echo's call below: 10 new tokens at these prices cost at most 0.025, well within the plan.
CALL_INPUT = {"prompt": "Hello, subscriber", "max_new_tokens": 10, "tokens_per_second": 200}


def prepare_stripe(fake: FakeStripe) -> tuple[str, str]:
    """Stripe's answers for the journey: (the onboarding link, the Checkout page)."""
    fake.requests.clear()
    fake.responses.clear()
    onboarding_url, checkout_url = fake.url + ONBOARDING_PATH, fake.url + CHECKOUT_PATH
    fake.respond("POST", "/v1/accounts", 200, {"id": ACCOUNT_ID, "object": "account"})
    fake.respond(
        "POST", "/v1/account_links", 200, {"object": "account_link", "url": onboarding_url}
    )
    fake.respond("GET", ONBOARDING_PATH, 200, {"page": "Stripe Connect onboarding (fake)"})
    price = {"id": PRICE_ID, "object": "price", "product": "prod_e2e_listing"}
    fake.respond("POST", "/v1/prices", 200, price)
    fake.respond("POST", "/v1/customers", 200, {"id": "cus_e2e_buyer", "object": "customer"})
    session = {"id": SESSION_ID, "object": "checkout.session", "url": checkout_url}
    fake.respond("POST", "/v1/checkout/sessions", 200, session)
    fake.respond("GET", CHECKOUT_PATH, 200, {"page": "Stripe Checkout (fake)"})
    fake.respond("GET", "/v1/invoices", 200, {"object": "list", "data": []})
    return onboarding_url, checkout_url


def stripe_says(base_url: str, type_: str, obj: dict) -> None:
    answer = post_signed(base_url, make_event(type_, obj))
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == EventStatus.PROCESSED, (type_, answer.json())


def subscription_events(org: Organization, plan: ListingPlan) -> list[tuple[str, dict]]:
    """What Stripe sends once the customer has paid on the Checkout page."""
    now = int(time.time())
    metadata = {"org": str(org.pk), "kind": "listing_plan", "listing_plan": str(plan.pk)}
    completed = {
        "id": SESSION_ID, "object": "checkout.session", "mode": "subscription",
        "customer": "cus_e2e_buyer", "client_reference_id": str(org.pk),
        "subscription": SUBSCRIPTION_ID, "metadata": metadata, "payment_status": "paid",
    }  # fmt: skip
    subscription = {
        "id": SUBSCRIPTION_ID, "object": "subscription", "customer": "cus_e2e_buyer",
        "status": "active", "cancel_at_period_end": False, "metadata": metadata,
        "items": {"data": [{
            "price": {"id": PRICE_ID},
            "current_period_start": now, "current_period_end": now + 30 * 86400,
        }]},
    }  # fmt: skip
    invoice = {
        "id": "in_e2e_listing", "object": "invoice", "subscription": SUBSCRIPTION_ID,
        "billing_reason": "subscription_create", "amount_paid": 900, "currency": "usd",
        "charge": "ch_e2e_listing", "payment_intent": "pi_e2e_listing",
    }  # fmt: skip
    return [
        ("checkout.session.completed", completed),
        ("customer.subscription.created", subscription),
        ("invoice.paid", invoice),
    ]


def onboard(page: Page, fake: FakeStripe, onboarding_url: str) -> None:
    page.goto("/publisher/")
    page.get_by_role("button", name="Set up payouts").click()
    page.wait_for_url(onboarding_url)  # the fake's page: Stripe itself is never reached
    (link,) = fake.calls("/v1/account_links")
    assert link.form["account"] == [ACCOUNT_ID]
    assert [r.method for r in fake.calls(ONBOARDING_PATH)] == ["GET"]  # the browser


def price_and_plan(page: Page) -> None:
    """Schedules a pay-as-you-go price and adds a plan, in the browser."""
    page.goto("/publisher/listings/")
    page.fill("#id_echo_per_request", "0.002")
    page.get_by_role("button", name="Schedule price").click()
    expect(page.locator(".messages")).to_contain_text("New price for Echo (diagnostic) scheduled")
    page.fill("#id_echo_plan_name", "Starter")
    page.fill("#id_echo_plan_monthly_price", "9")
    page.fill("#id_echo_plan_included_usage", "5")
    page.fill("#id_echo_plan_trial_days", "0")
    page.fill("#id_echo_plan_overage_percent", "80")
    page.get_by_role("button", name="Add plan").click()
    expect(page.locator(".messages")).to_contain_text("now offers the Starter plan")
    row = page.locator("tbody tr", has_text="Starter")
    expect(row).to_contain_text("9 USD")
    expect(row.locator('[data-label="Beyond it"]')).to_have_text("then 80% of pay-as-you-go")
    expect(row.locator('[data-label="Status"]')).to_have_text("active")
    expect(row.locator('[data-label="Subscribers"]')).to_have_text("0")
    screenshot(page, "listing-plans")


def call_echo(base_url: str, token: str) -> dict:
    """One call with the customer's API token, waited for; its final state with the cost."""
    headers = {"Authorization": f"Bearer {token}", "Prefer": "wait=30"}
    body = {"model": "echo", "input": CALL_INPUT}
    created = httpx.post(f"{base_url}/api/v1/predictions", json=body, headers=headers, timeout=60)
    assert created.status_code in (200, 201), created.text
    prediction = created.json()
    deadline = time.monotonic() + 30
    while prediction.get("cost") is None and time.monotonic() < deadline:
        time.sleep(0.2)
        url = f"{base_url}/api/v1/predictions/{prediction['id']}"
        prediction = httpx.get(url, headers=headers, timeout=30).json()
    return prediction


@pytest.mark.timeout(240)
def test_a_customer_subscribes_to_a_publishers_model_and_calls_it(
    new_context, live, fake_stripe, owner, outsider, catalog, token_for
):
    onboarding_url, checkout_url = prepare_stripe(fake_stripe)
    publisher = Organization.objects.get(memberships__user=owner)
    customer = Organization.objects.get(memberships__user=outsider)
    echo = catalog["echo"]
    echo.org = publisher  # the publisher's published model
    echo.save(update_fields=["org"])
    prices.set_price(echo, input_per_million="1000", output_per_million="2000", per_request="0.001")

    seller = new_context().new_page()
    log_in(seller, owner.email)
    onboard(seller, fake_stripe, onboarding_url)
    stripe_says(live.base_url, "account.updated", account_obj(ACCOUNT_ID))
    assert PublisherAccount.objects.get(org=publisher).onboarded
    price_and_plan(seller)
    plan = ListingPlan.objects.get(listing=echo, is_active=True)
    assert (plan.monthly_price, plan.included_usage, plan.overage_percent) == (
        Decimal("9"), Decimal("5"), Decimal("80")
    )  # fmt: skip
    assert plan.stripe_price_id == PRICE_ID
    (stripe_price,) = fake_stripe.calls("/v1/prices")
    assert stripe_price.form["unit_amount"] == ["900"]

    buyer = new_context().new_page()
    log_in(buyer, outsider.email)
    buyer.goto("/models/echo/")
    offered = buyer.locator(f"#listing-plan-{plan.pk}")
    expect(offered).to_contain_text("Starter: $9 / month, includes $5 of calls")
    expect(offered).to_contain_text("then 80% of pay-as-you-go")
    screenshot(buyer, "listing-subscribe")
    offered.get_by_role("button", name="Subscribe to Starter").click()
    buyer.wait_for_url(checkout_url)
    (session,) = fake_stripe.calls("/v1/checkout/sessions")
    assert session.form["line_items[0][price]"] == [PRICE_ID]
    assert session.form["metadata[listing_plan]"] == [str(plan.pk)]
    assert session.form["client_reference_id"] == [str(customer.pk)]
    assert session.form["cancel_url"] == [f"{live.base_url}/models/echo/"]

    for type_, obj in subscription_events(customer, plan):
        stripe_says(live.base_url, type_, obj)
    subscription = ListingSubscription.objects.get(org=customer, listing=echo)
    assert (subscription.status, subscription.plan) == ("active", plan)
    buyer.goto("/models/echo/")
    expect(buyer.locator("aside")).to_contain_text("Subscribed Starter: active")

    prediction = call_echo(live.base_url, token_for(customer))
    assert prediction["status"] == "succeeded", prediction
    cost = prediction["cost"]
    assert [part["source"] for part in cost["paid_from"]] == ["subscription"], cost
    assert Decimal(cost["amount"]) > 0

    buyer.goto("/billing/")
    row = buyer.locator("#subscriptions tbody tr", has_text="Starter")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text(f"${cost['amount']} used of $5")
    expect(row).to_contain_text("then 80% of pay-as-you-go")
    screenshot(buyer, "listing-subscription-billing")

    # The invoice's royalty entry: 9 USD charged, the publisher's share after the fee.
    (earning,) = RoyaltyEntry.objects.filter(publisher=publisher, kind="subscription")
    share = f"{earning.publisher_share.normalize():f}"
    seller.goto("/publisher/")
    expect(seller.locator("dl.facts", has_text="Earned this month")).to_contain_text(f"{share} USD")
    ledger = seller.locator("section[aria-labelledby=ledger-heading] tbody tr").first
    expect(ledger).to_contain_text("subscription")
    expect(ledger).to_contain_text("echo")
    expect(ledger).to_contain_text(f"{share} USD")
    screenshot(seller, "publisher-earnings")
    seller.goto("/publisher/analytics/")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    day = seller.locator("tbody tr", has_text=today)
    expect(day.locator('[data-label="Calls"]')).to_have_text("1")
    expect(day.locator('[data-label="Orgs"]')).to_have_text("1")
    screenshot(seller, "publisher-analytics")
    seller.goto("/publisher/listings/")
    starter = seller.locator("tbody tr", has_text="Starter")
    expect(starter.locator('[data-label="Subscribers"]')).to_have_text("1")
