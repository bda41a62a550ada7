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


def statement(price, user=None) -> str:
    return render_to_string(
        "billing/_price_for_viewer.html", {"price": price, "user": user or AnonymousUser()}
    )


def test_a_hard_capped_free_user_is_never_shown_overage(owner, free_plan, pro_plan, listing):
    free_plan.included_models.add(listing)
    price = price_for_viewer(personal(owner), listing)
    assert price.plan_name == "Free"
    assert price.lines == ["$1 per 1M input tokens", "$2 per 1M output tokens"]
    assert price.beyond == "stop"
    html = statement(price, owner)
    assert "On your Free plan:" in html
    assert "calls stop until the next period" in html
    assert "overage" not in html


def test_with_credits_a_hard_capped_plan_goes_on_from_credits(owner, free_plan, listing):
    free_plan.included_models.add(listing)
    workspace = personal(owner)
    credits.grant_credits(workspace, "5")
    price = price_for_viewer(workspace, listing)
    assert price.beyond == "credits"
    assert "from your prepaid credits" in statement(price, owner)


def test_a_plan_with_overage_says_so(owner, listing):
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


def test_the_model_page_context_carries_it(owner, free_plan, listing, client_for):
    response = client_for(owner).get(f"/models/{listing.slug}/")
    assert response.context["viewer_price"].plan_name == "Free"


def test_no_subscribe_button_without_stripe(owner, free_plan, pro_plan, client_for, settings):
    settings.STRIPE_SECRET_KEY = ""
    html = client_for(owner).get("/pricing/").content.decode()
    assert "Subscribe to Pro" not in html
    assert "an administrator can grant this plan" in html
    settings.STRIPE_SECRET_KEY = "sk_test_x"
    assert "Subscribe to Pro" in client_for(owner).get("/pricing/").content.decode()
