"""Our Stripe client against localstripe (customers, subscriptions, invoices) and, for what
localstripe lacks (Checkout, Portal, Prices, meters), against a recording fake of Stripe's
hosted API: the assertions are on the exact requests the SDK sent."""

from __future__ import annotations

from decimal import Decimal

import pytest
import stripe
from django.core.management import call_command

from billing import checkout, overage_reports, stripe_events
from billing.models import (
    CallCost,
    Customer,
    MeterReport,
    Plan,
    Subscription,
    UsagePeriod,
    UsageRecord,
)
from inference.models import Prediction, Status
from tests.billing.conftest import STRIPE_KEY

pytestmark = pytest.mark.django_db


# --- localstripe ----------------------------------------------------------------------


def test_customer_is_created_once_per_org(localstripe, owner, org):
    first = checkout.ensure_customer(org, owner)
    assert checkout.ensure_customer(org, owner) == first
    assert Customer.objects.get(org=org).stripe_customer_id == first
    remote = stripe.Customer.retrieve(first, api_key=STRIPE_KEY)
    assert remote["metadata"]["org"] == str(org.pk)


def _localstripe_subscription(customer_id: str, org, status_plan_id: str) -> dict:
    """A paid Pro subscription in localstripe, with a test card as the default method."""
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}
    method = stripe.PaymentMethod.create(api_key=STRIPE_KEY, type="card", card=card)
    stripe.PaymentMethod.attach(method["id"], api_key=STRIPE_KEY, customer=customer_id)
    stripe.Customer.modify(
        customer_id, api_key=STRIPE_KEY,
        invoice_settings={"default_payment_method": method["id"]},
    )  # fmt: skip
    product = stripe.Product.create(api_key=STRIPE_KEY, name="Pro")
    stripe.Plan.create(
        api_key=STRIPE_KEY, id=status_plan_id, product=product["id"], amount=2000,
        currency="usd", interval="month",
    )  # fmt: skip
    return stripe.Subscription.create(
        api_key=STRIPE_KEY, customer=customer_id, items=[{"plan": status_plan_id}],
        metadata={"org": str(org.pk), "plan": "pro"},
    )  # fmt: skip


def test_resync_mirrors_the_subscription_from_stripe(localstripe, owner, org, pro_plan):
    customer = checkout.ensure_customer(org, owner)
    remote = _localstripe_subscription(customer, org, "plan_resync")
    stale = Subscription.objects.create(
        org=org, plan=pro_plan, status="past_due", stripe_subscription_id=remote["id"]
    )
    outcome = stripe_events.resync_subscription(stale)
    stale.refresh_from_db()
    assert outcome.startswith("applied")
    assert remote["status"] == stale.status == "active"
    assert stale.current_period_end is not None


def test_invoices_are_listed_from_stripe(localstripe, owner, org):
    customer = checkout.ensure_customer(org, owner)
    _localstripe_subscription(customer, org, "plan_invoices")  # issues and pays an invoice
    remote = stripe.Invoice.list(api_key=STRIPE_KEY, customer=customer)["data"]
    listed = checkout.invoices_for(org)
    assert remote and [inv.id for inv in listed] == [inv["id"] for inv in remote]
    assert (listed[0].total_cents, listed[0].status) == (2000, "paid")


# --- Recording fake of Stripe's hosted APIs ------------------------------------------


def test_checkout_sends_a_subscription_session_for_the_org(
    fake_stripe, owner, org, pro_plan, client_for
):
    Customer.objects.create(org=org, stripe_customer_id="cus_known")
    fake_stripe.respond("POST", "/v1/checkout/sessions", 200,
                        {"id": "cs_1", "object": "checkout.session",
                         "url": "https://checkout.stripe.test/cs_1"})  # fmt: skip
    response = client_for(owner, org).post("/billing/checkout/pro/")
    assert response.status_code == 302
    assert response["Location"] == "https://checkout.stripe.test/cs_1"
    (call,) = fake_stripe.calls("/v1/checkout/sessions")
    form = call.form
    assert form["mode"] == ["subscription"]
    assert form["customer"] == ["cus_known"]
    assert form["client_reference_id"] == [str(org.pk)]
    assert form["line_items[0][price]"] == ["price_pro"]
    assert form["line_items[0][quantity]"] == ["1"]
    assert form["line_items[1][price]"] == ["price_pro_overage"]
    assert "line_items[1][quantity]" not in form
    assert form["subscription_data[trial_period_days]"] == ["14"]
    assert form["subscription_data[metadata][org]"] == [str(org.pk)]
    assert form["success_url"][0].endswith("/billing/success/?session_id={CHECKOUT_SESSION_ID}")
    assert call.headers["Authorization"] == f"Bearer {STRIPE_KEY}"


def test_first_checkout_creates_the_customer_with_an_idempotency_key(
    fake_stripe, owner, org, pro_plan, client_for
):
    fake_stripe.respond("POST", "/v1/customers", 200, {"id": "cus_new", "object": "customer"})
    session = {"id": "cs_1", "object": "checkout.session", "url": "https://x.test/c"}
    fake_stripe.respond("POST", "/v1/checkout/sessions", 200, session)
    client_for(owner, org).post("/billing/checkout/pro/")
    client_for(owner, org).post("/billing/checkout/pro/")
    (created,) = fake_stripe.calls("/v1/customers")
    assert created.headers["Idempotency-Key"] == f"portal-customer-org-{org.pk}"
    assert created.form["metadata[org]"] == [str(org.pk)]
    assert len(fake_stripe.calls("/v1/checkout/sessions")) == 2


def test_portal_session_for_the_orgs_customer(fake_stripe, owner, org, client_for):
    Customer.objects.create(org=org, stripe_customer_id="cus_known")
    fake_stripe.respond("POST", "/v1/billing_portal/sessions", 200,
                        {"id": "bps_1", "object": "billing_portal.session",
                         "url": "https://billing.stripe.test/p"})  # fmt: skip
    response = client_for(owner, org).post("/billing/portal/")
    assert response["Location"] == "https://billing.stripe.test/p"
    (call,) = fake_stripe.calls("/v1/billing_portal/sessions")
    assert call.form["customer"] == ["cus_known"]
    assert call.form["return_url"][0].endswith("/billing/")


def test_stripe_down_at_checkout_is_a_message_not_a_500(fake_stripe, owner, org, pro_plan,
                                                         client_for):  # fmt: skip
    Customer.objects.create(org=org, stripe_customer_id="cus_known")
    fake_stripe.respond("POST", "/v1/checkout/sessions", 500, {"error": {"message": "down"}})
    response = client_for(owner, org).post("/billing/checkout/pro/", follow=True)
    assert response.status_code == 200
    assert b"did not answer" in response.content


def test_sync_plans_creates_product_prices_and_meter(fake_stripe, pro_plan, free_plan):
    pro_plan.stripe_price_id = pro_plan.stripe_overage_price_id = ""
    pro_plan.save()
    fake_stripe.respond("POST", "/v1/products", 200, {"id": "prod_pro", "object": "product"})
    fake_stripe.respond("GET", "/v1/billing/meters", 200, {"object": "list", "data": []})
    fake_stripe.respond("POST", "/v1/billing/meters", 200,
                        {"id": "mtr_1", "object": "billing.meter", "event_name": "x"})  # fmt: skip
    fake_stripe.respond("POST", "/v1/prices", 200, {"id": "price_base", "object": "price"})
    fake_stripe.respond("POST", "/v1/prices", 200, {"id": "price_over", "object": "price"})
    call_command("sync_plans")
    pro_plan.refresh_from_db()
    assert (pro_plan.stripe_product_id, pro_plan.stripe_price_id) == ("prod_pro", "price_base")
    assert pro_plan.stripe_overage_price_id == "price_over"
    base, overage = fake_stripe.calls("/v1/prices")
    assert base.form["unit_amount"] == ["2000"]
    assert base.form["recurring[interval]"] == ["month"]
    assert overage.form["recurring[usage_type]"] == ["metered"]
    assert overage.form["recurring[meter]"] == ["mtr_1"]
    # The meter counts cents: the overage was priced at listing prices already.
    assert overage.form["unit_amount"] == ["1"]
    assert "transform_quantity[divide_by]" not in overage.form
    (meter,) = fake_stripe.calls("/v1/billing/meters")[1:]
    assert meter.form["event_name"] == ["model_portal_overage_cents"]
    assert meter.form["display_name"] == ["Model Portal overage (cents)"]
    assert not Plan.objects.get(slug="free").stripe_price_id


def _overage_receipt(org, echo, amount: str) -> CallCost:
    from django.utils import timezone

    prediction = Prediction.objects.create(org=org, model=echo, status=Status.SUCCEEDED)
    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    period, _ = UsagePeriod.objects.get_or_create(
        org=org, start=start, defaults={"end": timezone.now()}
    )
    UsageRecord.objects.create(prediction=prediction, org=org, period=period, model=echo)
    return CallCost.objects.create(
        prediction=prediction, org=org, model=echo, currency="usd", amount=Decimal(amount),
        paid_as_overage=Decimal(amount),
    )  # fmt: skip


def test_overage_is_reported_in_cents_in_batches_retried_and_never_twice(fake_stripe, org, echo):
    Customer.objects.create(org=org, stripe_customer_id="cus_meter")
    _overage_receipt(org, echo, "0.300004")
    _overage_receipt(org, echo, "0.2")
    fake_stripe.respond("POST", "/v1/billing/meter_events", 500, {"error": {"message": "x"}})
    fake_stripe.respond("POST", "/v1/billing/meter_events", 200, {"object": "billing.meter_event"})

    assert overage_reports.report_overage() == {"retry": 1}
    report = MeterReport.objects.get()
    assert (report.amount, report.cents, report.rounding) == (
        Decimal("0.500004"), 50, Decimal("-0.000004")
    )  # fmt: skip
    assert (report.state, report.attempts) == ("pending", 1)
    assert overage_reports.report_overage() == {"sent": 1}
    assert overage_reports.report_overage() == {}

    first, second = fake_stripe.calls("/v1/billing/meter_events")
    assert first.form["identifier"] == second.form["identifier"] == [report.identifier]
    assert second.form["payload[stripe_customer_id]"] == ["cus_meter"]
    assert second.form["payload[value]"] == ["50"]
    assert second.form["event_name"] == ["model_portal_overage_cents"]
    report.refresh_from_db()
    assert report.state == "sent" and report.sent_at is not None


def test_cents_round_the_periods_running_total_once(fake_stripe, org, echo):
    """Three reports of $0.004 each: rounded one by one they would bill 0 cents three
    times; on the running total they bill 0, 1 and 0 cents ($0.012 -> 1 cent)."""
    Customer.objects.create(org=org, stripe_customer_id="cus_round")
    fake_stripe.respond("POST", "/v1/billing/meter_events", 200, {"object": "billing.meter_event"})
    for _ in range(3):
        _overage_receipt(org, echo, "0.004")
        overage_reports.report_overage()
    reports = list(MeterReport.objects.order_by("pk"))
    assert [r.cents for r in reports] == [0, 1, 0]
    assert sum(r.amount for r in reports) == Decimal("0.012")
    assert sum(r.rounding for r in reports) == Decimal("-0.002")
    assert {r.state for r in reports} == {"sent"}
    # Only the report with cents went to Stripe; the others had nothing to bill.
    (sent,) = fake_stripe.calls("/v1/billing/meter_events")
    assert sent.form["payload[value]"] == ["1"]


def test_a_receipt_joins_one_report_only(fake_stripe, org, echo):
    Customer.objects.create(org=org, stripe_customer_id="cus_once")
    receipt = _overage_receipt(org, echo, "1.5")
    overage_reports.batch_overage()
    overage_reports.batch_overage()
    assert MeterReport.objects.get().cents == 150
    assert receipt.metered.report == MeterReport.objects.get()


def test_sync_plans_updates_a_synced_plan_and_retires_its_old_price(fake_stripe, pro_plan):
    """A second sync of a plan whose price changed: the product is updated in place (its
    id in the path), a new price is made and the old one deactivated."""
    pro_plan.stripe_product_id, pro_plan.stripe_price_id = "prod_pro", "price_old"
    pro_plan.stripe_overage_price_id = "price_over"
    pro_plan.save()
    fake_stripe.respond(
        "POST", "/v1/products/prod_pro", 200, {"id": "prod_pro", "object": "product"}
    )
    fake_stripe.respond(
        "GET", "/v1/prices/price_old", 200,
        {"id": "price_old", "object": "price", "active": True, "unit_amount": 1500,
         "currency": "usd", "recurring": {"interval": "month"}},
    )  # fmt: skip
    fake_stripe.respond("POST", "/v1/prices", 200, {"id": "price_new", "object": "price"})
    fake_stripe.respond("POST", "/v1/prices/price_old", 200, {"id": "price_old", "object": "price"})
    call_command("sync_plans")
    pro_plan.refresh_from_db()
    assert pro_plan.stripe_price_id == "price_new"
    [renamed] = fake_stripe.calls("/v1/products/prod_pro")
    assert renamed.form["name"] == ["Model Portal Pro"]
    [retired] = fake_stripe.calls("/v1/prices/price_old")[1:]
    assert retired.form == {"active": ["false"]}
