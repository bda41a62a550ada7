"""Listing subscription plans in the browser (issue #13): the publisher's plans on
/publisher/listings/ (owners and admins add and retire them, members read, another org's
listing or plan is a 404 like a missing one), the model page's plans and Subscribe
button, the listing checkout view, and the billing page's model subscriptions.

The exact Stripe requests are the service tests' (test_listing_subscriptions.py): here,
the pages and what reaches the recording fake at all."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.test import Client

from billing import listing_subscriptions, prices
from billing.models import ListingPlan, ListingSubscription
from models_hub.models import ModelListing, Visibility
from portal.models import Role
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

LISTINGS = "/publisher/listings/"
PLAN = {"name": "Starter", "monthly_price": "9", "included_usage": "5", "trial_days": "7"}
STRIPE_PRICE = {"id": "price_new", "object": "price", "product": "prod_new"}
CHECKOUT_URL = "https://checkout.stripe.test/cs_1"


def plans_url(slug: str) -> str:
    return f"/publisher/listings/{slug}/plans/"


def retire_url(slug: str, plan_id: int) -> str:
    return f"/publisher/listings/{slug}/plans/{plan_id}/retire/"


def checkout_url(plan_id: int) -> str:
    return f"/billing/checkout/listing/{plan_id}/"


@pytest.fixture
def stripe_prices(fake_stripe):
    """Stripe creates each plan's Price and deactivates it on retirement."""
    fake_stripe.respond("POST", "/v1/prices", 200, STRIPE_PRICE)
    fake_stripe.respond("POST", "/v1/prices/price_new", 200, {**STRIPE_PRICE, "active": False})
    return fake_stripe


@pytest.fixture
def plan(listing) -> ListingPlan:
    return ListingPlan.objects.create(
        listing=listing, name="Team", monthly_price=Decimal("49"), included_usage=Decimal("40"),
        trial_days=14, stripe_price_id="price_team",
    )  # fmt: skip


@pytest.fixture
def checkout_answers(fake_stripe):
    fake_stripe.respond("POST", "/v1/customers", 200, {"id": "cus_buyer", "object": "customer"})
    fake_stripe.respond(
        "POST", "/v1/checkout/sessions", 200,
        {"id": "cs_1", "object": "checkout.session", "url": CHECKOUT_URL},
    )  # fmt: skip
    return fake_stripe


def plan_count(listing) -> int:
    return ListingPlan.objects.filter(listing=listing).count()


def normalized(response, *values: str) -> str:
    text = response.content.decode()
    for value in values:
        text = text.replace(value, "<ID>")
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "csrf", text)


# --- The publisher's plans ----------------------------------------------------------------


def test_owner_sees_each_plan_with_its_subscribers_a_form_and_retire_buttons(
    listing, plan, org, owner, outsider_org, client_for
):
    retired = ListingPlan.objects.create(
        listing=listing, name="Old", monthly_price=Decimal("5"), included_usage=Decimal("1"),
        is_active=False,
    )  # fmt: skip
    listing_subscriptions.grant(outsider_org, plan, None)
    page = client_for(owner, org).get(LISTINGS)
    assert page.status_code == 200
    text = page.content.decode()
    row = re.search(r"<tr><td data-label=\"Plan\">Team</td>.*?</tr>", text, re.DOTALL).group(0)
    assert "49 USD" in row and "40 USD" in row and "14 days" in row and ">active<" in row
    assert '<td data-label="Subscribers">1</td>' in row
    assert retire_url(listing.slug, plan.pk) in row
    old = re.search(r"<tr><td data-label=\"Plan\">Old</td>.*?</tr>", text, re.DOTALL).group(0)
    assert ">retired<" in old and '<td data-label="Subscribers">0</td>' in old
    assert retire_url(listing.slug, retired.pk) not in text  # retired already
    assert plans_url(listing.slug) in text


def test_a_member_reads_the_plans_but_cannot_change_them(
    listing, plan, org, teammate, client_for, stripe_prices, onboarded
):
    member = client_for(teammate, org)
    text = member.get(LISTINGS).content.decode()
    assert "Team" in text and "change prices and plans" in text
    assert plans_url(listing.slug) not in text and retire_url(listing.slug, plan.pk) not in text
    added = member.post(plans_url(listing.slug), PLAN)
    retired = member.post(retire_url(listing.slug, plan.pk))
    assert added.status_code == retired.status_code == 403
    assert "Your role in this organization does not allow this" in added.content.decode()
    assert plan_count(listing) == 1
    plan.refresh_from_db()
    assert plan.is_active
    assert not stripe_prices.requests


def test_an_admin_adds_a_plan_with_its_stripe_price(
    listing, org, admin, client_for, stripe_prices, onboarded
):
    client = client_for(admin, org)
    response = client.post(plans_url(listing.slug), PLAN)
    assert response.status_code == 302 and response["Location"] == LISTINGS
    made = ListingPlan.objects.get(listing=listing)
    assert (made.name, made.monthly_price, made.included_usage, made.trial_days) == (
        "Starter", Decimal("9"), Decimal("5"), 7
    )  # fmt: skip
    assert (made.created_by, made.stripe_price_id, made.is_active) == (admin, "price_new", True)
    assert len(stripe_prices.calls("/v1/prices")) == 1
    assert "now offers the Starter plan" in client.get(LISTINGS).content.decode()
    assert made.overage_percent == Decimal(100)  # the form's field left empty


def test_a_plans_overage_percent_is_set_on_the_form_and_shown_in_its_row(
    listing, org, owner, client_for, stripe_prices, onboarded
):
    client = client_for(owner, org)
    form = client.get(LISTINGS).content.decode()
    assert "Beyond the included usage (% of pay-as-you-go)" in form
    assert "80 is 20% off, 0 is free" in form  # the field's help text
    response = client.post(plans_url(listing.slug), {**PLAN, "overage_percent": "80"})
    assert response.status_code == 302
    assert ListingPlan.objects.get(listing=listing).overage_percent == Decimal(80)
    text = client.get(LISTINGS).content.decode()
    row = re.search(r"<tr><td data-label=\"Plan\">Starter</td>.*?</tr>", text, re.DOTALL).group(0)
    assert '<td data-label="Beyond it">then 80% of pay-as-you-go</td>' in row


def test_a_replayed_post_adds_a_second_plan(
    listing, org, owner, client_for, stripe_prices, onboarded
):
    client = client_for(owner, org)
    for _ in range(2):
        assert client.post(plans_url(listing.slug), PLAN).status_code == 302
    assert plan_count(listing) == 2


def test_retiring_twice_is_harmless(listing, org, owner, client_for, stripe_prices, onboarded):
    client = client_for(owner, org)
    client.post(plans_url(listing.slug), PLAN)
    made = ListingPlan.objects.get(listing=listing)
    for _ in range(2):
        response = client.post(retire_url(listing.slug, made.pk))
        assert response.status_code == 302 and response["Location"] == LISTINGS
    made.refresh_from_db()
    assert not made.is_active
    # Stripe's Price is deactivated once: the second click finds the plan retired.
    assert len(stripe_prices.calls("/v1/prices/price_new")) == 1
    assert "The plan is retired" in client.get(LISTINGS).content.decode()


def test_another_orgs_listing_or_plan_is_a_404_like_a_missing_one(
    listing, plan, outsider, outsider_org, client_for, stripe_prices
):
    session = client_for(outsider, outsider_org)  # owner of their own org
    assert "Team" not in session.get(LISTINGS).content.decode()
    theirs = session.post(plans_url(listing.slug), PLAN)
    missing = session.post(plans_url("no-such-model"), PLAN)
    assert theirs.status_code == missing.status_code == 404
    assert normalized(theirs, "acme-echo") == normalized(missing, "no-such-model")
    gone = session.post(retire_url(listing.slug, plan.pk))
    assert gone.status_code == 404
    # Their own listing with this org's plan id: the plan is not found on it.
    echo = ModelListing.objects.get(slug="echo")
    echo.org = outsider_org
    echo.save(update_fields=["org"])
    own = session.post(retire_url(echo.slug, plan.pk))
    nowhere = session.post(retire_url(echo.slug, 987654321))
    assert own.status_code == nowhere.status_code == 404
    assert normalized(own, retire_url(echo.slug, plan.pk)) == normalized(
        nowhere, retire_url(echo.slug, 987654321)
    )
    plan.refresh_from_db()
    assert plan.is_active and plan_count(listing) == 1
    assert not stripe_prices.requests


BAD_PLANS = [
    {"name": ""},
    {"name": "x" * 61},
    {"monthly_price": ""},
    {"monthly_price": "abc"},
    {"monthly_price": "1e400"},
    {"monthly_price": "-9"},
    {"monthly_price": "0.10"},
    {"monthly_price": "9.999"},
    {"monthly_price": "NaN"},
    {"monthly_price": "9" * 40},
    {"monthly_price": "100001"},
    {"included_usage": ""},
    {"included_usage": "-1"},
    {"included_usage": "1e400"},
    {"included_usage": "Infinity"},
    {"trial_days": "-1"},
    {"trial_days": "91"},
    {"trial_days": "seven"},
    {"trial_days": "1.5"},
    {"trial_days": "9999"},
    {"overage_percent": "abc"},
    {"overage_percent": "100.01"},
    {"overage_percent": "-1"},
    {"overage_percent": "12.345"},
    {"overage_percent": "1e400"},
    {"overage_percent": "9" * 40},
]


@pytest.mark.parametrize(
    "overrides", BAD_PLANS, ids=lambda o: ",".join(f"{k}={v[:12]}" for k, v in o.items())
)
def test_bad_input_rerenders_with_an_error_and_writes_nothing(
    overrides, listing, org, owner, client_for, stripe_prices, onboarded
):
    response = client_for(owner, org).post(plans_url(listing.slug), {**PLAN, **overrides})
    assert response.status_code == 400
    text = response.content.decode()
    assert 'class="error"' in text
    assert text.count('<span class="error" role="alert">') == 1  # next to its own field
    assert plan_count(listing) == 0
    assert not stripe_prices.requests


def test_a_missing_field_is_a_400_too(listing, org, owner, client_for, stripe_prices, onboarded):
    response = client_for(owner, org).post(plans_url(listing.slug), {"name": "Starter"})
    assert response.status_code == 400 and plan_count(listing) == 0


def test_a_publisher_not_onboarded_is_told_to_finish_payouts(
    listing, org, owner, client_for, stripe_prices
):
    response = client_for(owner, org).post(plans_url(listing.slug), PLAN)
    assert response.status_code == 400
    assert "finish setting up payouts" in response.content.decode()
    assert plan_count(listing) == 0 and not stripe_prices.requests


def test_stripe_down_is_a_form_error_and_no_plan(
    listing, org, owner, client_for, fake_stripe, onboarded
):
    fake_stripe.respond("POST", "/v1/prices", 500, {"error": {"message": "down"}})
    response = client_for(owner, org).post(plans_url(listing.slug), PLAN)
    assert response.status_code == 400
    assert "did not answer" in response.content.decode()
    assert plan_count(listing) == 0


def test_stripe_down_on_retire_is_a_message_and_the_plan_stays(
    listing, plan, org, owner, client_for, fake_stripe
):
    fake_stripe.respond("POST", "/v1/prices/price_team", 500, {"error": {"message": "down"}})
    response = client_for(owner, org).post(retire_url(listing.slug, plan.pk))
    assert response.status_code == 400
    assert "did not answer" in response.content.decode()
    plan.refresh_from_db()
    assert plan.is_active


def test_the_forms_need_a_csrf_token(listing, plan, org, owner, stripe_prices, onboarded):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post(plans_url(listing.slug), PLAN).status_code == 403
    assert client.post(retire_url(listing.slug, plan.pk)).status_code == 403
    assert client.post(checkout_url(plan.pk)).status_code == 403
    plan.refresh_from_db()
    assert plan.is_active and plan_count(listing) == 1


# --- The model page -------------------------------------------------------------------


def model_page(client, listing) -> str:
    response = client.get(f"/models/{listing.slug}/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_model_page_offers_active_plans_with_a_subscribe_button(
    listing, plan, outsider, outsider_org, client_for
):
    ListingPlan.objects.create(
        listing=listing, name="Gone", monthly_price=Decimal("5"), included_usage=Decimal("1"),
        is_active=False,
    )  # fmt: skip
    text = model_page(client_for(outsider, outsider_org), listing)
    offered = re.search(rf'<li id="listing-plan-{plan.pk}">.*?</li>', text, re.DOTALL).group(0)
    assert "Team" in offered and "$49 / month" in offered and "includes $40" in offered
    assert "each month, then pay-as-you-go, 14-day free trial." in offered
    ListingPlan.objects.filter(pk=plan.pk).update(overage_percent=Decimal("80"))
    text = model_page(client_for(outsider, outsider_org), listing)
    assert "each month, then 80% of pay-as-you-go, 14-day free trial." in text
    assert f'action="{checkout_url(plan.pk)}"' in offered and ">Subscribe</button>" in offered
    assert "Gone" not in text


def test_who_sees_which_way_to_subscribe(listing, plan, outsider_org, client_for, client):
    anonymous = model_page(client, listing)
    assert "Sign up</a> to subscribe" in anonymous and checkout_url(plan.pk) not in anonymous
    member = make_user("buyer-member@example.com")
    outsider_org.memberships.create(user=member, role=Role.MEMBER)
    text = model_page(client_for(member, outsider_org), listing)
    assert "Only an owner of the organization can subscribe" in text
    assert checkout_url(plan.pk) not in text


def test_without_stripe_the_plan_is_shown_with_a_note_and_no_button(
    listing, plan, outsider, outsider_org, client_for, settings
):
    settings.STRIPE_SECRET_KEY = ""
    text = model_page(client_for(outsider, outsider_org), listing)
    assert "Team" in text and "Billing is not configured on this portal" in text
    assert checkout_url(plan.pk) not in text


def test_a_subscribed_org_sees_its_subscription_instead_of_the_button(
    listing, plan, outsider, outsider_org, client_for
):
    sub = listing_subscriptions.grant(outsider_org, plan, None)
    client = client_for(outsider, outsider_org)
    text = model_page(client, listing)
    assert ">Subscribed</span> Team" in text and ">active<" in text
    assert checkout_url(plan.pk) not in text
    ListingSubscription.objects.filter(pk=sub.pk).update(status="canceled")
    assert checkout_url(plan.pk) in model_page(client, listing)  # ended: may subscribe again


def test_a_listing_without_plans_shows_no_subscriptions(
    listing, outsider, outsider_org, client_for
):
    assert "Subscriptions</h2>" not in model_page(client_for(outsider, outsider_org), listing)


# --- The checkout view ------------------------------------------------------------------


def test_the_owner_is_sent_to_checkout_with_303(
    listing, plan, outsider, outsider_org, client_for, checkout_answers
):
    response = client_for(outsider, outsider_org).post(checkout_url(plan.pk))
    assert response.status_code == 303 and response["Location"] == CHECKOUT_URL
    [sent] = checkout_answers.calls("/v1/checkout/sessions")
    assert sent.form["line_items[0][price]"] == ["price_team"]
    assert sent.form["cancel_url"] == [f"http://testserver/models/{listing.slug}/"]
    assert sent.form["success_url"] == [
        "http://testserver/billing/success/?session_id={CHECKOUT_SESSION_ID}"
    ]


def test_members_and_admins_may_not_check_out(
    listing, plan, outsider_org, client_for, checkout_answers
):
    for role in (Role.MEMBER, Role.ADMIN):
        user = make_user(f"buyer-{role}@example.com")
        outsider_org.memberships.create(user=user, role=role)
        assert client_for(user, outsider_org).post(checkout_url(plan.pk)).status_code == 403
    assert not checkout_answers.requests


def test_plans_the_org_cannot_buy_are_404_like_missing_ones(
    listing, plan, outsider, outsider_org, client_for, checkout_answers
):
    client = client_for(outsider, outsider_org)
    missing = client.post(checkout_url(987654321))
    assert missing.status_code == 404
    listing.visibility = Visibility.PRIVATE
    listing.save(update_fields=["visibility"])
    private = client.post(checkout_url(plan.pk))
    assert private.status_code == 404
    assert normalized(private, checkout_url(plan.pk)) == normalized(
        missing, checkout_url(987654321)
    )
    listing.visibility = Visibility.PUBLIC
    listing.save(update_fields=["visibility"])
    plan.is_active = False
    plan.save(update_fields=["is_active"])
    assert client.post(checkout_url(plan.pk)).status_code == 404
    assert client.get(checkout_url(plan.pk)).status_code == 405
    assert not checkout_answers.requests


def test_without_stripe_checkout_goes_back_to_the_model_page_saying_so(
    listing, plan, outsider, outsider_org, client_for, settings
):
    settings.STRIPE_SECRET_KEY = ""
    client = client_for(outsider, outsider_org)
    response = client.post(checkout_url(plan.pk))
    assert response.status_code == 303 and response["Location"] == f"/models/{listing.slug}/"
    assert "Billing is not configured" in model_page(client, listing)


def test_a_paying_subscriber_is_told_to_manage_billing(
    listing, plan, outsider, outsider_org, client_for, checkout_answers
):
    sub = listing_subscriptions.grant(outsider_org, plan, None)
    ListingSubscription.objects.filter(pk=sub.pk).update(stripe_subscription_id="sub_paid")
    client = client_for(outsider, outsider_org)
    response = client.post(checkout_url(plan.pk))
    assert response.status_code == 303 and response["Location"] == f"/models/{listing.slug}/"
    assert "already subscribes" in model_page(client, listing)
    assert not checkout_answers.calls("/v1/checkout/sessions")


def test_stripe_down_at_checkout_is_a_message(
    listing, plan, outsider, outsider_org, client_for, fake_stripe
):
    fake_stripe.respond("POST", "/v1/customers", 500, {"error": {"message": "down"}})
    client = client_for(outsider, outsider_org)
    response = client.post(checkout_url(plan.pk))
    assert response.status_code == 303
    assert "did not answer" in model_page(client, listing)


# --- The billing page -------------------------------------------------------------------


def test_the_billing_page_lists_the_orgs_model_subscriptions(
    listing, plan, outsider, outsider_org, owner, org, client_for, fake_stripe
):
    fake_stripe.respond("GET", "/v1/invoices", 200, {"object": "list", "data": []})
    sub = listing_subscriptions.grant(outsider_org, plan, None)
    usage = listing_subscriptions.usage_for(sub, sub.created_at)
    type(usage).objects.filter(pk=usage.pk).update(used=Decimal("12.5"))
    text = client_for(outsider, outsider_org).get("/billing/").content.decode()
    row = re.search(r'<tr><td data-label="Model">.*?</tr>', text, re.DOTALL).group(0)
    assert f'href="/models/{listing.slug}/"' in row and "Team ($49 / month)" in row
    assert ">active<" in row and "$12.5 used of $40, $27.5 left; then pay-as-you-go" in row
    ListingPlan.objects.filter(pk=plan.pk).update(overage_percent=Decimal("33.5"))
    text = client_for(outsider, outsider_org).get("/billing/").content.decode()
    assert "$27.5 left; then 33.5% of pay-as-you-go" in text
    assert f"{usage.end:%Y-%m-%d %H:%M}" in row
    # The publisher's own billing page lists none of its customers' subscriptions.
    theirs = client_for(owner, org).get("/billing/").content.decode()
    assert "No model subscriptions" in theirs


def test_the_listings_page_says_when_a_price_change_reaches_subscribers(
    listing, plan, org, owner, outsider_org, client_for, onboarded, settings
):
    """A subscriber renewing in 5 days keeps the old price then (the change is announced
    now, the notice is 14 days) and gets it at the renewal after."""
    from datetime import timedelta

    from dateutil.relativedelta import relativedelta
    from django.utils import timezone
    from django.utils.html import strip_tags

    now = timezone.now()
    start, end = now - timedelta(days=25), now + timedelta(days=5)
    sub = listing_subscriptions.grant(outsider_org, plan, None)
    ListingSubscription.objects.filter(pk=sub.pk).update(
        current_period_start=start, current_period_end=end, prices_announced_by=start
    )
    effective = now + timedelta(days=2)
    prices.set_price(listing, effective_from=effective, input_per_million="3")
    # The page's text, as read: each moment is a <time> (the |when filter) naming its zone.
    page = strip_tags(client_for(owner, org).get(LISTINGS).content.decode())
    reaches = f"reaches 1 subscriber on {(end + relativedelta(months=1)):%Y-%m-%d %H:%M} UTC"
    assert reaches in page
    assert f"The price from {effective:%Y-%m-%d %H:%M}" in page
