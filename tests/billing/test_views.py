"""Pages and APIs: roles, tenancy, bad input, and what each shows."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from billing import credits
from billing.checkout import grant_plan
from billing.models import CallCost, Subscription, UsagePeriod, UsageRecord
from inference.models import Prediction, Status
from models_hub.catalog import pricing_for

pytestmark = pytest.mark.django_db


def ledger(org, model, *, input_tokens=10, output_tokens=20, token=None, amount="0") -> CallCost:
    """A settled call: its reservation entry and its receipt (the settlement entry)."""
    now = timezone.now()
    period, _ = UsagePeriod.objects.get_or_create(
        org=org, start=now.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
        defaults={"end": now + timezone.timedelta(days=31)},
    )  # fmt: skip
    prediction = Prediction.objects.create(
        org=org, model=model, status=Status.SUCCEEDED, token=token
    )
    UsageRecord.objects.create(
        prediction=prediction, org=org, period=period, model=model, token=token
    )
    return CallCost.objects.create(
        prediction=prediction, org=org, model=model, currency="usd", requests=1,
        input_tokens=input_tokens, output_tokens=output_tokens, amount=Decimal(amount),
        paid_by_plan=Decimal(amount),
    )  # fmt: skip


# --- Checkout and portal: owners only ---------------------------------------------


@pytest.mark.parametrize("path", ["/billing/checkout/pro/", "/billing/portal/"])
def test_member_cannot_open_checkout_or_portal(path, teammate, org, pro_plan, client_for):
    assert client_for(teammate, org).post(path).status_code == 403


@pytest.mark.parametrize("path", ["/billing/checkout/pro/", "/billing/portal/"])
def test_unauthenticated_is_sent_to_log_in(path, client, pro_plan):
    response = client.post(path)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("path", ["/billing/checkout/pro/", "/billing/portal/"])
def test_get_is_405(path, owner, org, client_for):
    assert client_for(owner, org).get(path).status_code == 405


@pytest.mark.parametrize("slug", ["nope", "hidden"])
def test_unknown_or_hidden_plan_is_404(slug, owner, org, pro_plan, client_for):
    pro_plan.slug, pro_plan.is_public = "hidden", False
    pro_plan.save()
    assert client_for(owner, org).post(f"/billing/checkout/{slug}/").status_code == 404


def test_without_stripe_key_paid_plans_say_billing_is_not_configured(
    owner, org, pro_plan, client_for, settings
):
    settings.STRIPE_SECRET_KEY = ""
    response = client_for(owner, org).post("/billing/checkout/pro/", follow=True)
    assert b"Billing is not configured" in response.content
    assert b"Billing is not configured" in client_for(owner, org).get("/pricing/").content


def test_free_plan_needs_no_checkout(owner, org, free_plan, client_for):
    response = client_for(owner, org).post("/billing/checkout/free/", follow=True)
    assert b"needs no checkout" in response.content


def test_portal_without_a_customer_explains(owner, org, client_for):
    response = client_for(owner, org).post("/billing/portal/", follow=True)
    assert b"no billing account yet" in response.content


def test_a_subscribed_org_changes_plans_in_the_portal(owner, org, pro_plan, client_for):
    Subscription.objects.create(org=org, plan=pro_plan, stripe_subscription_id="sub_x")
    response = client_for(owner, org).post("/billing/checkout/pro/", follow=True)
    assert b"already has a subscription" in response.content


def test_admin_grant_is_refused_for_a_stripe_subscription(org, pro_plan, team_plan):
    from portal.errors import Conflict

    grant_plan(org, team_plan, None)
    assert Subscription.objects.get(org=org).plan == team_plan
    sub = Subscription.objects.get(org=org)
    sub.stripe_subscription_id = "sub_live"
    sub.save()
    with pytest.raises(Conflict):
        grant_plan(org, pro_plan, None)


# --- Pages ----------------------------------------------------------------------------


def test_pricing_is_public_and_lists_the_plans(client, free_plan, pro_plan):
    response = client.get("/pricing/")
    assert response.status_code == 200
    assert b"Pro" in response.content and b"$20.00" in response.content
    assert b"Subscribe" not in response.content  # nobody to subscribe for


def test_pricing_says_what_failed_and_canceled_calls_cost(client, free_plan):
    page = client.get("/pricing/").content.decode()
    assert "A failed or canceled call that produced no output counts no request" in page
    assert "one that produced output counts as one request plus the tokens" in page


def test_pricing_offers_checkout_to_owners_only(owner, teammate, org, pro_plan, client_for):
    assert b"Subscribe to Pro" in client_for(owner, org).get("/pricing/").content
    assert b"Subscribe to Pro" not in client_for(teammate, org).get("/pricing/").content


def test_model_pricing_names_the_including_plans(echo, free_plan, pro_plan, team_plan):
    pricing = pricing_for(echo)
    assert [p["slug"] for p in pricing["plans"]] == ["free", "pro", "team"]
    assert "overage" not in pricing


def test_model_api_and_page_show_pricing(client, echo, pro_plan):
    body = client.get("/api/v1/models/echo").json()
    assert body["pricing"]["plans"] == [{"slug": "pro", "name": "Pro"}]
    assert b"Pro" in client.get("/models/echo/").content


def test_billing_page_shows_the_past_due_banner(owner, org, pro_plan, client_for, settings):
    settings.STRIPE_SECRET_KEY = ""  # no invoices to fetch
    Subscription.objects.create(
        org=org, plan=pro_plan, status="past_due", past_due_since=timezone.now()
    )
    response = client_for(owner, org).get("/billing/")
    assert response.status_code == 200
    assert b"last payment for your Pro plan failed" in response.content


def test_billing_pages_need_a_login(client):
    for path in ("/billing/", "/billing/usage/", "/billing/usage.csv"):
        assert client.get(path).status_code == 302


def test_usage_page_draws_svg_charts_of_the_orgs_usage_only(
    owner, org, outsider, outsider_org, echo, client_for
):
    ledger(org, echo)
    ledger(outsider_org, echo, input_tokens=777777)
    response = client_for(owner, org).get("/billing/usage/")
    assert response.status_code == 200
    assert response.content.count(b"<svg") == 6
    assert b"777,777" not in response.content and b"777777" not in response.content


def test_usage_page_with_bad_dates_shows_a_message(owner, org, client_for):
    response = client_for(owner, org).get("/billing/usage/?start=yesterday")
    assert response.status_code == 200
    assert b"start must be a date" in response.content


def test_usage_csv(owner, org, echo, client_for, token_for):
    ledger(org, echo, input_tokens=5, output_tokens=6, amount="0.0123")
    response = client_for(owner, org).get("/billing/usage.csv?group_by=model")
    assert response["Content-Type"] == "text/csv"
    lines = response.content.decode().strip().splitlines()
    assert lines[0].startswith("model,predictions,requests")
    assert lines[1].startswith("echo,1,1,5,6,11,")
    assert "0.012300" in lines[1]
    bad = client_for(owner, org).get("/billing/usage.csv?group_by=nope")
    assert bad.status_code == 400


# --- GET /api/v1/usage and /api/v1/account ------------------------------------------


def test_usage_api_groups_by_model_day_and_token(org, echo, listings, token_for, api_client):
    from portal.models import ApiToken

    token = token_for(org, name="ci")
    row = ApiToken.objects.get(org=org, name="ci")
    ledger(org, echo, token=row)
    ledger(org, listings["all-minilm-l6-v2"], input_tokens=1, output_tokens=0)
    client = api_client(token)
    by_model = client.get("/api/v1/usage?group_by=model").json()
    assert [(r["model"], r["total_tokens"]) for r in by_model["data"]] == [
        ("all-minilm-l6-v2", 1), ("echo", 30),
    ]  # fmt: skip
    assert by_model["total"]["requests"] == 2
    day = client.get("/api/v1/usage?group_by=day").json()["data"]
    assert day[0]["day"] == timezone.now().date().isoformat() and day[0]["requests"] == 2
    tokens = client.get("/api/v1/usage?group_by=token").json()["data"]
    assert {(r["token"] or {}).get("name") for r in tokens} == {"ci", None}


def test_usage_api_range_excludes_other_days(org, echo, token_for, api_client):
    ledger(org, echo)
    body = api_client(token_for(org)).get("/api/v1/usage?start=2020-01-01&end=2020-01-31").json()
    assert body["data"] == [] and body["total"]["requests"] == 0
    assert body["start"] == "2020-01-01T00:00:00Z" and body["end"] == "2020-02-01T00:00:00Z"


def test_usage_api_never_shows_another_orgs_usage(org, outsider_org, echo, token_for, api_client):
    ledger(outsider_org, echo)
    body = api_client(token_for(org)).get("/api/v1/usage").json()
    assert body["data"] == [] and body["total"]["predictions"] == 0


@pytest.mark.parametrize(
    "query",
    [
        "group_by=nope", "group_by=", "start=yesterday", "start=2026-13-45", "end=12",
        "start=2026-02-01&end=2026-01-01", "start=2020-01-01&end=2026-01-01",
        "start[]=1",
    ],
)  # fmt: skip
def test_usage_api_bad_input_is_400(query, org, token_for, api_client):
    response = api_client(token_for(org)).get(f"/api/v1/usage?{query}")
    if query in ("group_by=", "start[]=1"):
        assert response.status_code == 200  # empty means the default; unknown keys ignored
        return
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"]


@pytest.mark.parametrize(
    "query",
    [
        "end=9999-12-31", "start=9999-12-30&end=9999-12-31", "start=0001-01-01",
        "start=0001-01-01T00:00:00%2B14:00&end=0001-01-02", "end=9999-12-31T23:59:59-12:00",
        "start=9999-12-31T23:59:59.999999&end=9999-12-31", "start=2026-01-01T25:00:00",
    ],
)  # fmt: skip
def test_usage_dates_at_the_ends_of_the_calendar_are_400(query, org, token_for, api_client):
    """Dates whose arithmetic (the day after an end date, a time zone) overflowed: a 500."""
    response = api_client(token_for(org)).get(f"/api/v1/usage?{query}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] in ("start", "end")


def test_usage_pages_refuse_calendar_ends_without_a_500(org, owner, client_for):
    client = client_for(owner, org)
    page = client.get("/billing/usage/?start=9999-12-30&end=9999-12-31")
    assert page.status_code == 200  # the default range, with the error shown
    assert "must be between 1970-01-01 and 9998-12-31" in page.content.decode()
    assert client.get("/billing/usage.csv?start=9999-12-30&end=9999-12-31").status_code == 400


def test_usage_api_needs_credentials_and_read_scope(api_client, org, token_for):
    assert api_client().get("/api/v1/usage").status_code == 401
    assert api_client("mp_bad_token").get("/api/v1/usage").status_code == 401
    assert api_client(token_for(org, scopes=["predict"])).get("/api/v1/usage").status_code == 403
    response = api_client(token_for(org)).post("/api/v1/usage", data={})
    assert response.status_code == 405


def test_account_shows_plan_quota_and_period(owner, free_plan, echo, token_for, api_client):
    org = owner.memberships.get(org__is_personal=True).org
    ledger(org, echo)
    UsagePeriod.objects.filter(org=org).update(
        requests=3, allowance_used=Decimal("0.25"), allowance_reserved=Decimal("0.05")
    )
    body = api_client(token_for(org)).get("/api/v1/account").json()
    assert body["plan"]["slug"] == "free" and body["plan"]["past_due"] is False
    assert body["quota"]["allowance"] == {
        "included": "1", "used": "0.25", "reserved": "0.05", "remaining": "0.7"
    }  # fmt: skip
    assert body["quota"]["requests"] == 3
    assert body["credits"] == {"balance": "0", "reserved": "0"}
    assert body["spend"] == {"cap": None, "spent": "0", "reserved": "0", "remaining": None}
    assert body["period"]["end"] > body["period"]["start"]


def test_team_without_a_subscription_shows_no_allowance(
    owner, org, free_plan, token_for, api_client, client_for
):
    body = api_client(token_for(org)).get("/api/v1/account").json()
    assert body["plan"]["status"] == "subscription_required"
    assert body["quota"]["allowance"]["remaining"] == "0"
    assert b"No plan yet" in client_for(owner, org).get("/billing/").content
    assert b"Your plan" not in client_for(owner, org).get("/pricing/").content
    assert b"Your plan" in client_for(owner).get("/pricing/").content


def test_pricing_says_the_free_plan_comes_with_the_personal_workspace(client, free_plan):
    page = client.get("/pricing/").content.decode()
    assert (
        "The Free plan comes with your personal workspace; "
        "team workspaces start when you subscribe" in page
    )


def test_account_without_plans_says_billing_is_off(org, token_for, api_client):
    body = api_client(token_for(org)).get("/api/v1/account").json()
    assert body["plan"] is None
    assert body["quota"]["allowance"]["remaining"] is None


def test_the_model_page_says_how_the_viewer_pays(owner, org, free_plan, echo, client, client_for):
    personal = client_for(owner).get("/models/echo/").content.decode()
    on_plan = "On your Free plan:</strong> free, paid from the plan's allowance ($1 left"
    assert on_plan in personal
    team = client_for(owner, org).get("/models/echo/").content.decode()
    assert "Not in your plan: buy credits to pay per call" in team
    credits.grant_credits(org, "12.5")
    team = client_for(owner, org).get("/models/echo/").content.decode()
    assert "Not in your plan: your credits pay ($12.5 left) at these prices." in team
    assert "For you:" not in client.get("/models/echo/").content.decode()
