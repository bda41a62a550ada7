"""The price on the viewer's plan (issue #15), and no Subscribe button without Stripe."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.template.loader import render_to_string

from billing import credits
from billing.models import Plan
from billing.viewer_price import price_for_viewer
from portal.models import Organization

pytestmark = pytest.mark.django_db


def personal(user) -> Organization:
    return Organization.objects.get(memberships__user=user, is_personal=True)


@pytest.fixture
def priced_echo(echo):
    """The operator's echo at a price: plans may cover it (a publisher's listing never)."""
    from billing import prices

    prices.set_price(echo, input_per_million="1", output_per_million="2")
    return echo


def statement(price, user=None) -> str:
    return render_to_string(
        "billing/_price_for_viewer.html", {"price": price, "user": user or AnonymousUser()}
    )


def test_a_hard_capped_free_user_is_never_shown_overage(owner, free_plan, pro_plan, priced_echo):
    price = price_for_viewer(personal(owner), priced_echo)
    assert price.plan_name == "Free"
    assert price.lines == ["$1 per 1M input tokens", "$2 per 1M output tokens"]
    assert price.beyond == "stop"
    html = statement(price, owner)
    assert "On your Free plan:" in html
    assert "calls stop until the next period" in html
    assert "overage" not in html


def test_with_credits_a_hard_capped_plan_goes_on_from_credits(owner, free_plan, priced_echo):
    workspace = personal(owner)
    credits.grant_credits(workspace, "5")
    price = price_for_viewer(workspace, priced_echo)
    assert price.beyond == "credits"
    assert "from your prepaid credits" in statement(price, owner)


def test_a_plan_with_overage_says_so(owner, priced_echo):
    listing = priced_echo
    Plan.objects.create(
        slug="open", name="Open", is_default=True, allowance=1, overage_allowed=True,
        tasks=[listing.task],
    )  # fmt: skip
    price = price_for_viewer(personal(owner), listing)
    assert (price.plan_name, price.beyond) == ("Open", "overage")
    assert "overage at these same prices" in statement(price, owner)


def test_signed_out_visitors_see_the_pay_as_you_go_price(free_plan, listing):
    price = price_for_viewer(None, listing)
    assert price.plan_name is None
    html = statement(price)
    assert "Pay as you go:" in html and "$1 per 1M input tokens" in html
    assert "Sign up" in html


def test_the_model_page_context_carries_it(owner, free_plan, priced_echo, client_for):
    response = client_for(owner).get(f"/models/{priced_echo.slug}/")
    assert response.context["viewer_price"].plan_name == "Free"


def test_no_subscribe_button_without_stripe(owner, free_plan, pro_plan, client_for, settings):
    settings.STRIPE_SECRET_KEY = ""
    html = client_for(owner).get("/pricing/").content.decode()
    assert "Subscribe to Pro" not in html
    assert "an administrator can grant this plan" in html
    settings.STRIPE_SECRET_KEY = "sk_test_x"
    assert "Subscribe to Pro" in client_for(owner).get("/pricing/").content.decode()


def test_a_model_outside_the_plan_is_not_said_to_come_from_its_allowance(
    owner, org, free_plan, listing
):
    team = price_for_viewer(org, listing)  # a team workspace without a subscription
    assert team.plan_name is None
    html = statement(team, owner)
    assert "On your" not in html
    assert "For you:</strong> Not in your plan" in html
    # A publisher's listing: every call is charged at its price, never from an allowance.
    personal_price = price_for_viewer(personal(owner), listing)
    assert personal_price.plan_name is None
    assert "Not in your plan" in statement(personal_price, owner)
