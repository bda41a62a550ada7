"""Subscriptions to a publisher's listing (issue #13): included usage paid per subscription
under its own counters, then credits; the price lock; plans and Checkout with exact
Stripe requests; the Stripe mirror through signed events; royalty entries for invoices,
refunds and disputes."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from dateutil.relativedelta import relativedelta
from django.db import connections
from django.db.models import Sum
from django.utils import timezone

from billing import caps, checkout, costs, credits, listing_subscriptions, metering, prices
from billing.account import terms_for
from billing.models import (
    CallCost,
    CreditEntry,
    ListingPlan,
    ListingPrice,
    ListingSubscription,
    PublisherAccount,
    RoyaltyEntry,
    Subscription,
    SubscriptionInvoice,
    SubscriptionUsage,
    UsagePeriod,
)
from inference.admission import PredictionRequest, admit
from inference.lifecycle import finish
from inference.models import Prediction, Status
from portal import hotcache
from portal import services as portal_services
from portal.auth import Principal
from portal.errors import Conflict, InvalidInput, NotAllowed, NotFound, PaymentRequired
from portal.models import Role
from tests.billing.conftest import make_event
from tests.billing.test_quota import _admit_one, _hammer, _settle_all, money, run

pytestmark = pytest.mark.usefixtures("worker_present")

WORST = Decimal("0.025")  # echo as `priced`, 10 new tokens


@pytest.fixture
def publisher(outsider):
    publisher = portal_services.create_org("Model Makers", outsider)
    PublisherAccount.objects.create(
        org=publisher,
        stripe_account_id="acct_makers",
        details_submitted=True,
        charges_enabled=True,
        payouts_enabled=True,
    )
    return publisher


@pytest.fixture
def published(echo, publisher, priced):
    echo.org = publisher
    echo.save()
    return echo


@pytest.fixture
def plan(published) -> ListingPlan:
    """Two worst-case calls' worth of included usage a month."""
    return ListingPlan.objects.create(
        listing=published,
        name="Starter",
        monthly_price=Decimal("9"),
        included_usage=Decimal("0.05"),
        stripe_price_id="price_listing_starter",
    )


@pytest.fixture
def subscribed(org, plan, free_plan) -> ListingSubscription:
    return listing_subscriptions.grant(org, plan, None)


def _usage(sub: ListingSubscription) -> SubscriptionUsage:
    return SubscriptionUsage.objects.get(subscription=sub)


# --- Paying for calls -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_subscribed_call_is_held_on_the_subscription_not_the_site_plan(owner, org, subscribed):
    prediction = run(org, owner)
    usage = _usage(subscribed)
    assert (usage.included, usage.reserved, usage.used) == money("0.05", "0.025", "0")
    period = UsagePeriod.objects.get(org=org)
    assert (period.allowance_reserved, period.paid_reserved) == money("0", "0")

    finish(prediction, Status.SUCCEEDED, input_tokens=4, output_tokens=5)  # 0.015
    usage.refresh_from_db()
    assert (usage.reserved, usage.used) == money("0", "0.015")
    receipt = CallCost.objects.get(prediction=prediction)
    assert (receipt.paid_by_subscription, receipt.paid_by_plan, receipt.paid_by_credits) == money(
        "0.015", "0", "0"
    )
    assert costs.cost_payload(receipt)["paid_from"] == [
        {"source": "subscription", "amount": "0.015"}
    ]
    # The publisher is paid by the subscription's invoice, not per included call.
    assert not RoyaltyEntry.objects.exists()


@pytest.mark.django_db
def test_beyond_the_included_usage_credits_pay_and_without_them_it_is_402(owner, org, subscribed):
    run(org, owner)
    run(org, owner)  # 0.05 held: the included usage is all reserved
    with pytest.raises(PaymentRequired) as refused:
        run(org, owner)
    assert refused.value.code == "quota_exhausted"
    assert "Starter subscription" in refused.value.message

    credits.grant_credits(org, "1")
    third = run(org, owner)
    record = third.usage_record
    assert (record.reserved_allowance, record.reserved_credits) == money("0", "0.025")
    finish(third, Status.SUCCEEDED, input_tokens=4, output_tokens=10)
    entry = RoyaltyEntry.objects.get()
    assert (entry.kind, entry.customer_charge) == ("usage", Decimal("0.025"))


@pytest.mark.django_db
def test_a_subscription_needs_no_site_plan_coverage_and_ends_with_its_status(
    owner, org, subscribed, free_plan
):
    """The team workspace has no paid site plan and no credits: the listing subscription
    alone pays. A canceled one pays nothing."""
    run(org, owner)
    ListingSubscription.objects.filter(pk=subscribed.pk).update(status="canceled")
    hotcache.new_epoch()  # `.update()` sends no signal: as a webhook's save would
    with pytest.raises(PaymentRequired) as refused:
        run(org, owner)
    assert refused.value.code in ("subscription_required", "model_not_in_plan")


@pytest.mark.django_db
def test_another_orgs_subscription_covers_nobody_else(owner, org, plan, free_plan, outsider_org):
    listing_subscriptions.grant(outsider_org, plan, None)
    with pytest.raises(PaymentRequired):
        run(org, owner)


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_calls_to_a_subscribed_listing_settle_to_the_cent(
    owner, org, plan, free_plan
):
    plan.included_usage = WORST * 100
    plan.save()
    sub = listing_subscriptions.grant(org, plan, None)
    credits.grant_credits(org, "100")
    results = _hammer(200, _admit_one(org, owner))
    admitted = [r for r in results if isinstance(r, Prediction)]
    assert len(admitted) == 200, [r for r in results if not isinstance(r, Prediction)][:3]
    usage = _usage(sub)
    assert usage.reserved == WORST * 100 == usage.included  # never more than included
    _settle_all(admitted)  # each settles at exactly its worst case, 0.025

    usage.refresh_from_db()
    assert (usage.used, usage.reserved) == (WORST * 100, Decimal(0))
    receipts = CallCost.objects.filter(org=org).aggregate(
        amount=Sum("amount"),
        subscription=Sum("paid_by_subscription"),
        credits=Sum("paid_by_credits"),
        plan=Sum("paid_by_plan"),
    )
    assert receipts == {
        "amount": Decimal("5"),
        "subscription": Decimal("2.5"),
        "credits": Decimal("2.5"),
        "plan": Decimal(0),
    }
    assert credits.account_for(org).balance == Decimal("97.5")
    ledger = RoyaltyEntry.objects.aggregate(
        charge=Sum("customer_charge"), share=Sum("publisher_share"), fee=Sum("platform_fee")
    )
    assert RoyaltyEntry.objects.count() == 100
    assert ledger == {"charge": Decimal("2.5"), "share": Decimal("2"), "fee": Decimal("0.5")}
    period = UsagePeriod.objects.get(org=org)
    assert (period.allowance_reserved, period.allowance_used, period.paid_reserved) == money(
        "0", "0", "0"
    )


# --- Price lock -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_subscriber_keeps_the_price_until_the_first_renewal_after_the_notice(
    owner, org, plan, free_plan, outsider_org, outsider, post_event
):
    """Subscribed 45 days ago; the price doubled 20 days ago (announced and effective at
    once, an operator's change). A non-subscriber pays it; the subscriber keeps the old
    one through the renewal 10 days ago (within the 14-day notice) and gets the new one
    from the renewal after it."""
    now = timezone.now()
    long_ago = now - timedelta(days=60)
    ListingPrice.objects.filter(listing=plan.listing).update(
        created_at=long_ago, effective_from=long_ago
    )
    assert post_event(make_event("customer.subscription.created", _subscription(
        org, plan, sub_id="sub_lock", start=now - timedelta(days=40),
    ), int((now - timedelta(days=45)).timestamp()))).status_code == 200  # fmt: skip
    doubled = prices.set_price(
        plan.listing, input_per_million="2000", output_per_million="4000", per_request="0.002"
    )
    twenty_days_ago = now - timedelta(days=20)
    ListingPrice.objects.filter(pk=doubled.pk).update(
        created_at=twenty_days_ago, effective_from=twenty_days_ago
    )
    credits.grant_credits(outsider_org, "1")
    assert run(outsider_org, outsider).usage_record.max_cost == WORST * 2

    credits.grant_credits(org, "1")  # for what the included usage no longer holds
    renewals = [(10, WORST), (1, WORST * 2)]  # days ago, the price it brings
    for number, (days_ago, expected) in enumerate(renewals, start=1):
        renewal = _subscription(org, plan, sub_id="sub_lock", start=now - timedelta(days=days_ago))
        event = make_event("customer.subscription.updated", renewal, int(now.timestamp()) + number)
        assert post_event(event).status_code == 200
        assert run(org, owner).usage_record.max_cost == expected, days_ago


@pytest.mark.django_db
def test_the_date_a_change_reaches_a_subscriber_is_its_first_renewal_after_the_notice(
    org, subscribed, settings
):
    settings.LISTING_PRICE_LOCK_NOTICE_DAYS = 14
    now = timezone.now()
    start, end = now - timedelta(days=25), now + timedelta(days=5)
    ListingSubscription.objects.filter(pk=subscribed.pk).update(
        current_period_start=start, current_period_end=end,
        prices_announced_by=start - timedelta(days=60),
    )  # fmt: skip
    subscribed.refresh_from_db()
    # Announced 11 days before the last renewal: in force already.
    assert listing_subscriptions.takes_effect_for(subscribed, now - timedelta(days=45), now) == now
    # Announced 5 days before the last renewal: at the next one.
    assert listing_subscriptions.takes_effect_for(subscribed, now - timedelta(days=30), now) == end
    # Announced 10 days before the next renewal: at the one after it.
    assert listing_subscriptions.takes_effect_for(
        subscribed, now - timedelta(days=5), now
    ) == end + relativedelta(months=1)
    assert listing_subscriptions.takes_effect_for(subscribed, now - timedelta(days=10), now) == end


# --- Plans -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_plan_creates_its_monthly_stripe_price_exactly(published, outsider, fake_stripe):
    fake_stripe.respond(
        "POST", "/v1/prices", 200,
        {"id": "price_new", "object": "price", "product": "prod_new"},
    )  # fmt: skip
    plan = listing_subscriptions.create_plan(
        published, outsider, name=" Team ", monthly_price="49", included_usage="40",
        trial_days="7",
    )  # fmt: skip
    assert (plan.name, plan.monthly_price, plan.included_usage, plan.trial_days) == (
        "Team", Decimal("49"), Decimal("40"), 7
    )  # fmt: skip
    assert (plan.stripe_product_id, plan.stripe_price_id) == ("prod_new", "price_new")
    [sent] = fake_stripe.calls("/v1/prices")
    assert sent.form == {
        "unit_amount": ["4900"],
        "currency": ["usd"],
        "recurring[interval]": ["month"],
        "product_data[name]": [f"{published.name}: Team"],
        "product_data[metadata][kind]": ["listing_plan"],
        "product_data[metadata][listing_plan]": [str(plan.pk)],
        "metadata[kind]": ["listing_plan"],
        "metadata[listing_plan]": [str(plan.pk)],
    }
    assert sent.headers["Idempotency-Key"] == f"listing-plan-price-{plan.pk}"


@pytest.mark.django_db
def test_a_failed_stripe_price_writes_no_plan(published, outsider, fake_stripe):
    fake_stripe.respond("POST", "/v1/prices", 500, {"error": {"message": "down"}})
    with pytest.raises(Exception) as failed:
        listing_subscriptions.create_plan(
            published, outsider, name="Team", monthly_price="49", included_usage="40"
        )
    assert getattr(failed.value, "status", None) == 503
    assert not ListingPlan.objects.exists()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 61}, "name"),
        ({"monthly_price": "0.10"}, "monthly_price"),
        ({"monthly_price": "9.999"}, "monthly_price"),
        ({"monthly_price": "1e400"}, "monthly_price"),
        ({"monthly_price": "abc"}, "monthly_price"),
        ({"monthly_price": 9.5}, "monthly_price"),
        ({"monthly_price": "100001"}, "monthly_price"),
        ({"included_usage": "-1"}, "included_usage"),
        ({"trial_days": "91"}, "trial_days"),
        ({"trial_days": "-1"}, "trial_days"),
        ({"trial_days": "seven"}, "trial_days"),
        ({"overage_percent": "abc"}, "overage_percent"),
        ({"overage_percent": 1.5}, "overage_percent"),
        ({"overage_percent": "100.01"}, "overage_percent"),
        ({"overage_percent": "-1"}, "overage_percent"),
        ({"overage_percent": "12.345"}, "overage_percent"),
        ({"overage_percent": "1e400"}, "overage_percent"),
        ({"overage_percent": "9" * 40}, "overage_percent"),
        ({"overage_percent": "NaN"}, "overage_percent"),
    ],
)
@pytest.mark.django_db
def test_bad_plan_input_is_refused_and_writes_nothing(published, outsider, fields, param):
    values = {"name": "Team", "monthly_price": "49", "included_usage": "40", **fields}
    with pytest.raises(InvalidInput) as refused:
        listing_subscriptions.create_plan(published, outsider, **values)
    assert refused.value.param == param
    assert not ListingPlan.objects.exists()


@pytest.mark.parametrize(
    ("given", "stored"),
    [(None, "100"), ("", "100"), ("  ", "100"), ("80", "80"), ("0", "0"), ("12.5", "12.5")],
)
@pytest.mark.django_db
def test_a_plans_overage_percent_is_the_full_price_unless_given(
    published, outsider, settings, given, stored
):
    settings.STRIPE_SECRET_KEY = ""
    values = {"name": "Team", "monthly_price": "49", "included_usage": "40"}
    made = listing_subscriptions.create_plan(published, outsider, **values, overage_percent=given)
    made.refresh_from_db()
    assert made.overage_percent == Decimal(stored)


@pytest.mark.django_db
def test_only_an_onboarded_publishers_admins_create_plans(
    published, publisher, outsider, owner, teammate, settings
):
    settings.STRIPE_SECRET_KEY = ""
    values = {"name": "Team", "monthly_price": "49", "included_usage": "40"}
    publisher.memberships.create(user=teammate, role=Role.MEMBER)
    with pytest.raises(NotAllowed):
        listing_subscriptions.create_plan(published, teammate, **values)
    with pytest.raises(NotFound):
        listing_subscriptions.create_plan(published, owner, **values)
    PublisherAccount.objects.filter(org=publisher).update(payouts_enabled=False)
    with pytest.raises(Conflict) as refused:
        listing_subscriptions.create_plan(published, outsider, **values)
    assert refused.value.code == "publisher_not_onboarded"
    assert not ListingPlan.objects.exists()


@pytest.mark.django_db
def test_a_retired_plan_takes_no_checkout_but_keeps_its_subscribers(
    owner, org, plan, subscribed, outsider, settings
):
    settings.STRIPE_SECRET_KEY = ""
    listing_subscriptions.retire_plan(plan.pk, plan.listing, outsider)
    with pytest.raises(NotFound):
        listing_subscriptions.purchasable(org, plan.pk)
    prediction = run(org, owner)
    assert prediction.usage_record.subscription_usage_id is not None


# --- Checkout -------------------------------------------------------------------------


@pytest.fixture
def checkout_answers(fake_stripe):
    fake_stripe.respond("POST", "/v1/customers", 200, {"id": "cus_buyer", "object": "customer"})
    fake_stripe.respond(
        "POST", "/v1/checkout/sessions", 200,
        {"id": "cs_1", "object": "checkout.session", "url": "https://checkout.stripe.test/cs_1"},
    )  # fmt: skip
    return fake_stripe


@pytest.mark.django_db
def test_checkout_sends_the_listing_plan_with_its_trial_and_metadata(
    owner, org, plan, checkout_answers
):
    plan.trial_days = 7
    plan.save()
    url = checkout.start_listing_checkout(org, owner, plan.pk, "https://s/ok", "https://s/no")
    assert url == "https://checkout.stripe.test/cs_1"
    [sent] = checkout_answers.calls("/v1/checkout/sessions")
    metadata = {"org": str(org.pk), "kind": "listing_plan", "listing_plan": str(plan.pk)}
    expected = {
        "mode": ["subscription"],
        "customer": ["cus_buyer"],
        "client_reference_id": [str(org.pk)],
        "line_items[0][price]": ["price_listing_starter"],
        "line_items[0][quantity]": ["1"],
        "subscription_data[trial_period_days]": ["7"],
        "success_url": ["https://s/ok"],
        "cancel_url": ["https://s/no"],
    }
    for key, value in metadata.items():
        expected[f"metadata[{key}]"] = [value]
        expected[f"subscription_data[metadata][{key}]"] = [value]
    assert sent.form == expected


@pytest.mark.django_db
def test_checkout_is_for_owners_of_orgs_that_can_see_the_listing(
    owner, teammate, org, plan, outsider_org, checkout_answers
):
    with pytest.raises(NotAllowed):
        checkout.start_listing_checkout(org, teammate, plan.pk, "https://s/", "https://s/")
    with pytest.raises(NotFound):
        checkout.start_listing_checkout(org, owner, 10_000, "https://s/", "https://s/")
    plan.listing.visibility = "private"
    plan.listing.save()
    with pytest.raises(NotFound):  # another org's private listing: as if missing
        checkout.start_listing_checkout(org, owner, plan.pk, "https://s/", "https://s/")
    assert not checkout_answers.calls("/v1/checkout/sessions")


@pytest.mark.django_db
def test_a_paying_subscriber_cannot_check_out_again(owner, org, plan, subscribed, checkout_answers):
    ListingSubscription.objects.filter(pk=subscribed.pk).update(stripe_subscription_id="sub_9")
    with pytest.raises(Conflict) as refused:
        checkout.start_listing_checkout(org, owner, plan.pk, "https://s/", "https://s/")
    assert refused.value.code == "already_subscribed"


@pytest.mark.django_db
def test_without_stripe_checkout_says_billing_is_not_configured(owner, org, plan, settings):
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(PaymentRequired) as refused:
        checkout.start_listing_checkout(org, owner, plan.pk, "https://s/", "https://s/")
    assert refused.value.code == "billing_not_configured"


# --- The Stripe mirror, through signed events --------------------------------------------


def _checkout(org, plan, sub_id: str = "sub_listing") -> dict:
    return {
        "id": "cs_listing", "object": "checkout.session", "mode": "subscription",
        "customer": "cus_buyer", "client_reference_id": str(org.pk), "subscription": sub_id,
        "metadata": {"org": str(org.pk), "kind": "listing_plan", "listing_plan": str(plan.pk)},
    }  # fmt: skip


def _subscription(
    org, plan, status: str = "active", sub_id: str = "sub_listing", start=None
) -> dict:
    start = start or timezone.now() - timedelta(days=1)
    begins = int(start.timestamp())
    ends = int((start + relativedelta(months=1)).timestamp())
    return {
        "id": sub_id, "object": "subscription", "customer": "cus_buyer", "status": status,
        "cancel_at_period_end": False,
        "metadata": {"org": str(org.pk), "kind": "listing_plan", "listing_plan": str(plan.pk)},
        "items": {"data": [{
            "price": {"id": plan.stripe_price_id},
            "current_period_start": begins, "current_period_end": ends,
        }]},
    }  # fmt: skip


def _invoice(invoice_id: str = "in_1", amount: int = 900, **extra) -> dict:
    return {
        "id": invoice_id, "object": "invoice", "subscription": "sub_listing",
        "billing_reason": "subscription_create", "amount_paid": amount, "currency": "usd",
        "charge": "ch_sub", "payment_intent": "pi_sub", **extra,
    }  # fmt: skip


@pytest.fixture
def via_stripe(org, plan, pro_plan, post_event) -> ListingSubscription:
    """The org pays for the Pro site plan and subscribes to the listing through Checkout."""
    Subscription.objects.create(org=org, plan=pro_plan, stripe_subscription_id="sub_site")
    for event in (
        make_event("checkout.session.completed", _checkout(org, plan)),
        make_event("customer.subscription.created", _subscription(org, plan)),
        make_event("invoice.paid", _invoice()),
    ):
        assert post_event(event).status_code == 200
    return ListingSubscription.objects.get(org=org)


@pytest.mark.django_db
def test_checkout_adds_a_listing_subscription_beside_the_site_plan(owner, org, plan, via_stripe):
    assert (via_stripe.status, via_stripe.stripe_subscription_id) == ("active", "sub_listing")
    assert via_stripe.current_period_end is not None
    site = Subscription.objects.get(org=org)
    assert (site.plan.slug, site.stripe_subscription_id) == ("pro", "sub_site")
    prediction = run(org, owner)
    assert prediction.usage_record.subscription_usage.subscription == via_stripe


@pytest.mark.django_db
def test_a_paid_invoice_adds_one_subscription_entry_whatever_the_replays(
    org, plan, publisher, via_stripe, post_event
):
    event = make_event("invoice.paid", _invoice())
    for _ in range(3):
        assert post_event(event).status_code == 200
    assert post_event(make_event("invoice.paid", _invoice())).status_code == 200  # new event id
    entry = RoyaltyEntry.objects.get()
    assert (entry.kind, entry.reference, entry.publisher_id, entry.customer_id) == (
        "subscription", "invoice:in_1", publisher.pk, org.pk
    )  # fmt: skip
    assert (entry.customer_charge, entry.publisher_share, entry.platform_fee) == money(
        "9", "7.2", "1.8"
    )
    assert SubscriptionInvoice.objects.get().charge_id == "ch_sub"


@pytest.mark.django_db
def test_deletion_ends_access_and_an_older_update_does_not_revive_it(
    owner, org, plan, via_stripe, post_event
):
    created = int(timezone.now().timestamp()) + 10
    deleted = make_event("customer.subscription.deleted", _subscription(org, plan), created)
    older = make_event("customer.subscription.updated", _subscription(org, plan), created - 5)
    assert post_event(deleted).status_code == 200
    assert post_event(older).status_code == 200
    via_stripe.refresh_from_db()
    assert via_stripe.status == "canceled"
    with pytest.raises(PaymentRequired):
        run(org, owner)
    assert Subscription.objects.get(org=org).status == "active"  # the site plan stays


@pytest.mark.django_db
def test_refunds_reverse_the_invoice_entry_once_each(org, plan, via_stripe, post_event):
    charge = {
        "id": "ch_sub", "object": "charge", "payment_intent": "pi_sub", "amount_refunded": 300,
        "refunds": {"data": [{"id": "re_1", "amount": 300, "status": "succeeded"}]},
    }  # fmt: skip
    assert post_event(make_event("charge.refunded", charge)).status_code == 200
    charge = {
        **charge, "amount_refunded": 900,
        "refunds": {"data": [
            {"id": "re_2", "amount": 600, "status": "succeeded"},
            {"id": "re_1", "amount": 300, "status": "succeeded"},
        ]},
    }  # fmt: skip
    for _ in range(2):
        assert post_event(make_event("charge.refunded", charge)).status_code == 200
    refunds = RoyaltyEntry.objects.filter(kind="refund").order_by("reference")
    assert [(r.reference, r.customer_charge) for r in refunds] == [
        ("refund:re_1", Decimal("-3")),
        ("refund:re_2", Decimal("-6")),
    ]
    total = RoyaltyEntry.objects.aggregate(
        charge=Sum("customer_charge"), share=Sum("publisher_share"), fee=Sum("platform_fee")
    )
    assert total == {"charge": Decimal(0), "share": Decimal(0), "fee": Decimal(0)}


@pytest.mark.django_db
def test_a_cumulative_refund_without_a_refund_list_takes_each_cent_once(
    org, plan, via_stripe, post_event
):
    for refunded in (200, 200, 500, 300):  # a replayed total, then an older, smaller one
        charge = {"id": "ch_sub", "object": "charge", "amount_refunded": refunded}
        assert post_event(make_event("charge.refunded", charge)).status_code == 200
    taken = RoyaltyEntry.objects.filter(kind="refund").aggregate(total=Sum("customer_charge"))
    assert taken["total"] == Decimal("-5")


@pytest.mark.django_db
def test_a_dispute_reverses_and_a_won_dispute_restores(org, plan, via_stripe, post_event):
    dispute = {"id": "dp_1", "object": "dispute", "charge": "ch_sub", "amount": 900}
    opened = make_event("charge.dispute.created", {**dispute, "status": "needs_response"})
    won = make_event("charge.dispute.closed", {**dispute, "status": "won"})
    for event in (opened, opened, won, won):
        assert post_event(event).status_code == 200
    entries = RoyaltyEntry.objects.order_by("pk")
    assert [(e.kind, e.customer_charge) for e in entries] == [
        ("subscription", Decimal("9")),
        ("dispute", Decimal("-9")),
        ("dispute_won", Decimal("9")),
    ]
    lost = make_event("charge.dispute.closed", {**dispute, "id": "dp_2", "status": "lost"})
    assert post_event(lost).status_code == 200
    assert RoyaltyEntry.objects.count() == 3


@pytest.mark.django_db
def test_a_refund_of_a_charge_we_do_not_know_changes_nothing(org, plan, via_stripe, post_event):
    charge = {"id": "ch_other", "object": "charge", "amount_refunded": 900}
    response = post_event(make_event("charge.refunded", charge))
    assert response.status_code == 200
    assert RoyaltyEntry.objects.count() == 1


# --- The account ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_account_api_lists_listing_subscriptions_to_the_org_only(
    owner, org, subscribed, token_for, api_client, outsider_org
):
    run(org, owner)
    body = api_client(token_for(org)).get("/api/v1/account").json()
    [sub] = body["subscriptions"]
    assert sub["model"] == "echo"
    assert sub["plan"]["name"] == "Starter"
    assert sub["included_usage"] == {
        "included": "0.05", "used": "0", "reserved": "0.025", "remaining": "0.025",
    }  # fmt: skip
    assert sub["overage_percent"] == "100"
    ListingPlan.objects.filter(pk=subscribed.plan_id).update(overage_percent=Decimal("80"))
    [sub] = api_client(token_for(org)).get("/api/v1/account").json()["subscriptions"]
    assert sub["overage_percent"] == "80"
    other = api_client(token_for(outsider_org)).get("/api/v1/account").json()
    assert other["subscriptions"] == []
    assert json.dumps(body)  # money stays strings


@pytest.mark.parametrize("status", ["past_due", "unpaid", "incomplete", "paused"])
@pytest.mark.django_db
def test_a_live_subscription_with_a_payment_problem_blocks_a_second_checkout(
    owner, org, plan, subscribed, checkout_answers, status
):
    ListingSubscription.objects.filter(pk=subscribed.pk).update(
        stripe_subscription_id="sub_9", status=status
    )
    with pytest.raises(Conflict) as refused:
        checkout.start_listing_checkout(org, owner, plan.pk, "https://s/", "https://s/")
    assert refused.value.code == "already_subscribed"
    ListingSubscription.objects.filter(pk=subscribed.pk).update(status="canceled")
    assert checkout.start_listing_checkout(org, owner, plan.pk, "https://s/", "https://s/")


# --- The plan's overage price --------------------------------------------------------------


def _subscribe_at(org, plan: ListingPlan, percent: str, included: str) -> ListingSubscription:
    plan.overage_percent, plan.included_usage = Decimal(percent), Decimal(included)
    plan.save()
    return listing_subscriptions.grant(org, plan, None)


@pytest.mark.parametrize(
    ("percent", "held", "charged"),
    [
        ("80", "0.008", "0.0032"),
        ("33.33", "0.003333", "0.001333"),  # 0.003333 exactly; 0.0013332 rounded down
        ("100", "0.01", "0.004"),  # the full price: as before plans had a rate
        ("0", "0", "0"),  # free beyond the included usage
    ],
)
@pytest.mark.django_db
def test_a_call_across_the_included_usage_pays_the_rest_at_the_plans_rate(
    owner, org, plan, free_plan, percent, held, charged
):
    """0.03 included. The first call (0.015) is all within it, at the full price. The
    second's worst case (0.025) holds the 0.015 left and 0.01 beyond it at the rate; it
    delivers 0.019: 0.015 from the included usage, 0.004 beyond it at the rate."""
    sub = _subscribe_at(org, plan, percent, included="0.03")
    credits.grant_credits(org, "1")
    first = run(org, owner)
    finish(first, Status.SUCCEEDED, input_tokens=4, output_tokens=5)
    inside = CallCost.objects.get(prediction=first)
    assert (inside.amount, inside.paid_by_subscription, inside.paid_by_credits) == money(
        "0.015", "0.015", "0"
    )

    second = run(org, owner)
    record = second.usage_record
    assert (record.max_cost, record.reserved_allowance, record.reserved_credits) == money(
        "0.025", "0.015", held
    )
    assert record.overage_percent == Decimal(percent)
    finish(second, Status.SUCCEEDED, input_tokens=4, output_tokens=7)
    receipt = CallCost.objects.get(prediction=second)
    assert (receipt.paid_by_subscription, receipt.paid_by_credits, receipt.paid_as_overage) == (
        money("0.015", charged, "0")
    )
    assert receipt.amount == Decimal("0.015") + Decimal(charged)
    account = credits.account_for(org)
    assert (account.balance, account.credits_reserved) == (1 - Decimal(charged), 0)
    assert (_usage(sub).used, _usage(sub).reserved) == money("0.03", "0")
    period = UsagePeriod.objects.get(org=org)
    assert (period.spent, period.paid_reserved) == (Decimal(charged), 0)


@pytest.mark.django_db
def test_the_royalty_entry_of_a_discounted_call_splits_what_the_customer_paid(
    owner, org, plan, free_plan
):
    _subscribe_at(org, plan, "80", included="0")
    credits.grant_credits(org, "1")
    prediction = run(org, owner)
    finish(prediction, Status.SUCCEEDED, input_tokens=4, output_tokens=10)  # 0.025 listed
    receipt = CallCost.objects.get(prediction=prediction)
    assert costs.cost_payload(receipt)["amount"] == "0.02"
    assert costs.cost_payload(receipt)["paid_from"] == [{"source": "credits", "amount": "0.02"}]
    entry = RoyaltyEntry.objects.get()
    assert (entry.customer_charge, entry.publisher_share, entry.platform_fee) == money(
        "0.02", "0.016", "0.004"
    )


@pytest.mark.django_db
def test_at_0_percent_calls_beyond_the_included_usage_are_free_without_credits(
    owner, org, plan, free_plan
):
    _subscribe_at(org, plan, "0", included="0.03")
    calls = [run(org, owner) for _ in range(3)]  # no credits: the last two go beyond
    for prediction in calls:
        finish(prediction, Status.SUCCEEDED, input_tokens=4, output_tokens=10)
    amounts = [CallCost.objects.get(prediction=p).amount for p in calls]
    assert amounts == list(money("0.025", "0.005", "0"))
    assert not RoyaltyEntry.objects.exists()
    assert credits.account_for(org).balance == 0


@pytest.mark.django_db
def test_max_cost_and_spend_caps_count_the_discounted_charge(owner, org, plan, free_plan):
    """Nothing included, 80%: a worst case of 0.025 at the price is at most 0.02 charged."""
    _subscribe_at(org, plan, "80", included="0")
    credits.grant_credits(org, "1")
    data = {"prompt": "hello there", "max_new_tokens": 10}
    token = portal_services.issue_token(org, owner, "capped").token
    who = Principal(org=org, user=None, token=token, scopes=token.scopes)

    def call(max_cost: str | None = None) -> Prediction:
        cap = None if max_cost is None else Decimal(max_cost)
        return admit(who, PredictionRequest("echo", data, max_cost=cap))

    with pytest.raises(PaymentRequired) as refused:
        call("0.019999")
    assert refused.value.code == "cost_cap_exceeded" and "up to $0.02," in refused.value.message
    assert call("0.02").usage_record.reserved_credits == Decimal("0.02")

    caps.set_token_spend_cap(token, "0.04", actor=owner)  # two calls' charge, not one's price
    call()
    with pytest.raises(PaymentRequired) as capped:
        call()
    assert "API token's spend cap" in capped.value.message
    caps.set_token_spend_cap(token, None, actor=owner)
    caps.set_spend_cap(org, "0.06")
    call()
    with pytest.raises(PaymentRequired) as capped:
        call()
    assert "organization's spend cap" in capped.value.message


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_calls_across_a_discounted_boundary_settle_to_the_micro_unit(
    owner, org, plan, free_plan
):
    """Room for 100 worst cases and a bit: one call straddles the boundary; each settles
    at what it delivered (0 to 10 output tokens), so calls hold more than they pay."""
    sub = _subscribe_at(org, plan, "33.33", included=str(WORST * 100 + Decimal("0.01")))
    credits.grant_credits(org, "100")
    results = _hammer(200, _admit_one(org, owner))
    admitted = [r for r in results if isinstance(r, Prediction)]
    assert len(admitted) == 200, [r for r in results if not isinstance(r, Prediction)][:3]
    assert _usage(sub).reserved == _usage(sub).included
    straddling = [p.usage_record for p in admitted if 0 < p.usage_record.reserved_allowance < WORST]
    assert [(r.reserved_allowance, r.reserved_credits) for r in straddling] == [
        money("0.01", "0.004999")  # 0.015 beyond at 33.33%, rounded down
    ]

    def settle(pair: tuple[int, Prediction]) -> None:
        try:
            finish(pair[1], Status.SUCCEEDED, input_tokens=4, output_tokens=pair[0] % 11)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=25) as pool:
        list(pool.map(settle, enumerate(admitted)))

    receipts = CallCost.objects.filter(org=org)
    totals = receipts.aggregate(
        amount=Sum("amount"), subscription=Sum("paid_by_subscription"),
        credits=Sum("paid_by_credits"), overage=Sum("paid_as_overage"),
    )  # fmt: skip
    debited = -CreditEntry.objects.filter(org=org, kind="usage").aggregate(t=Sum("amount"))["t"]
    usage = _usage(sub)
    assert usage.reserved == 0 and usage.used == totals["subscription"]
    assert totals["amount"] == debited + usage.used
    assert (totals["credits"], totals["overage"]) == (debited, 0)
    assert credits.account_for(org).balance == 100 - debited
    assert credits.account_for(org).credits_reserved == 0
    price = prices.price_at(plan.listing)
    for receipt in receipts:  # each: the included part at the price, the rest at the rate
        billed = costs.Billed(receipt.input_tokens, receipt.output_tokens, Decimal(0), 1)
        listed = costs.amount_for(price, billed)
        beyond = listed - receipt.paid_by_subscription
        assert receipt.paid_by_credits == metering.at_percent(beyond, Decimal("33.33"))
    charged = RoyaltyEntry.objects.aggregate(t=Sum("customer_charge"))["t"]
    assert charged == debited
    period = UsagePeriod.objects.get(org=org)
    assert (period.paid_reserved, period.spent) == (0, debited)


@pytest.mark.django_db
def test_the_model_page_terms_name_the_rate_beyond_the_included_usage(org, plan, free_plan):
    _subscribe_at(org, plan, "100", included="0.05")
    assert terms_for(org, plan.listing) == (
        "Paid from your Starter subscription's included usage; beyond it, buy credits."
    )
    ListingPlan.objects.filter(pk=plan.pk).update(overage_percent=Decimal("80"))
    hotcache.new_epoch()  # `.update()` sends no signal
    credits.grant_credits(org, "2")
    assert terms_for(org, plan.listing) == (
        "Paid from your Starter subscription's included usage; beyond it, at 80% of these "
        "prices, your credits pay ($2 left)."
    )
