"""Prepaid credits (issue #12): buying with Checkout, auto top-up, refunds.

The Stripe side is the recording fake (`fake_stripe`): assertions are on the exact form
each request carried. Webhooks are signed events posted to the real endpoint. Money is
checked to the cent with Decimal. No prediction runs here."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from billing import credit_purchases, credits, stripe_client, tasks
from billing.models import BillingAccount, CreditEntry, Customer, StripeEvent
from portal.models import AuditLog, Role
from tests.billing.conftest import STRIPE_KEY, make_event
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

CHECKOUT = "/billing/credits/checkout/"
AUTO_TOP_UP = "/billing/credits/auto-top-up/"
SESSIONS = "/v1/checkout/sessions"
INTENTS = "/v1/payment_intents"


def balance(org) -> Decimal:
    return BillingAccount.objects.get(org=org).balance


def entries(org, kind=None) -> list[CreditEntry]:
    found = CreditEntry.objects.filter(org=org).order_by("pk")
    return list(found.filter(kind=kind) if kind else found)


def stripe_posts(fake_stripe) -> list:
    """What was sent to Stripe (the page may still GET the invoice list)."""
    return [r for r in fake_stripe.requests if r.method != "GET"]


@pytest.fixture
def admin(org):
    user = make_user("admin@example.com")
    org.memberships.create(user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def customer(org) -> Customer:
    return Customer.objects.create(org=org, stripe_customer_id="cus_known")


def session_obj(org, cents=2550, *, id_="cs_test_1", intent="pi_buy_1", status="paid") -> dict:
    return {
        "id": id_,
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": status,
        "amount_total": cents,
        "currency": "usd",
        "customer": "cus_known",
        "client_reference_id": str(org.pk),
        "metadata": {"org": str(org.pk), "kind": "credits"},
        "payment_intent": intent,
    }


def charge_obj(org, refunds, *, amount=2550, id_="ch_1", kind="credits") -> dict:
    refunded = sum(r["amount"] for r in refunds)
    return {
        "id": id_,
        "object": "charge",
        "amount": amount,
        "amount_refunded": refunded,
        "refunded": refunded == amount,
        "currency": "usd",
        "customer": "cus_known",
        "metadata": {"org": str(org.pk), "kind": kind},
        "refunds": {"object": "list", "data": refunds, "has_more": False},
    }


def refund(id_, cents, status="succeeded") -> dict:
    return {"id": id_, "object": "refund", "amount": cents, "status": status}


def intent_obj(org, id_="pi_top_1", *, kind="top_up", cents=2000, method="pm_card") -> dict:
    return {
        "id": id_,
        "object": "payment_intent",
        "amount": cents,
        "amount_received": cents,
        "currency": "usd",
        "customer": "cus_known",
        "payment_method": method,
        "status": "succeeded",
        "metadata": {"org": str(org.pk), "kind": kind},
    }


def created_intent(id_: str, status: str) -> dict:
    return {"id": id_, "object": "payment_intent", "status": status}


def outcome(response) -> str:
    assert response.status_code == 200, response.content
    return response.json()["outcome"]


def processed(event_id: str) -> str:
    return StripeEvent.objects.get(stripe_event_id=event_id).outcome


# --- stripe_client: the exact requests -------------------------------------------------


def test_credits_checkout_sends_a_payment_session(fake_stripe, owner, org, customer, client_for):
    fake_stripe.respond(
        "POST",
        SESSIONS,
        200,
        {"id": "cs_1", "object": "checkout.session", "url": "https://checkout.stripe.test/cs_1"},
    )
    response = client_for(owner, org).post(CHECKOUT, {"amount": "25.50"})
    assert response.status_code == 303
    assert response["Location"] == "https://checkout.stripe.test/cs_1"
    (call,) = fake_stripe.calls(SESSIONS)
    form = {key: values for key, values in call.form.items() if not key.endswith("_url")}
    assert form == {
        "mode": ["payment"],
        "customer": ["cus_known"],
        "client_reference_id": [str(org.pk)],
        "line_items[0][quantity]": ["1"],
        "line_items[0][price_data][currency]": ["usd"],
        "line_items[0][price_data][unit_amount]": ["2550"],
        "line_items[0][price_data][product_data][name]": ["Model Portal credits"],
        "metadata[org]": [str(org.pk)],
        "metadata[kind]": ["credits"],
        "payment_intent_data[metadata][org]": [str(org.pk)],
        "payment_intent_data[metadata][kind]": ["credits"],
        "payment_intent_data[setup_future_usage]": ["off_session"],
    }
    assert call.form["success_url"][0].endswith("/billing/?credits=paid")
    assert call.form["cancel_url"][0].endswith("/billing/")
    assert call.headers["Authorization"] == f"Bearer {STRIPE_KEY}"
    assert AuditLog.objects.filter(org=org, action="billing.credits_checkout_started").exists()


def test_first_credits_checkout_creates_the_customer_once(fake_stripe, owner, org, client_for):
    fake_stripe.respond("POST", "/v1/customers", 200, {"id": "cus_new", "object": "customer"})
    fake_stripe.respond("POST", SESSIONS, 200, {"id": "cs_1", "url": "https://x.test/c"})
    client_for(owner, org).post(CHECKOUT, {"amount": "5"})
    client_for(owner, org).post(CHECKOUT, {"amount": "10000"})
    assert len(fake_stripe.calls("/v1/customers")) == 1
    first, second = fake_stripe.calls(SESSIONS)
    assert first.form["customer"] == second.form["customer"] == ["cus_new"]
    assert first.form["line_items[0][price_data][unit_amount]"] == ["500"]
    assert second.form["line_items[0][price_data][unit_amount]"] == ["1000000"]


def test_top_up_payment_intent_request(fake_stripe, org):
    fake_stripe.respond("POST", INTENTS, 200, created_intent("pi_1", "succeeded"))
    intent = stripe_client.create_top_up_payment_intent("cus_1", "pm_1", 2000, org.pk, "topup-k")
    assert intent == stripe_client.TopUpIntent("pi_1", "succeeded")
    (call,) = fake_stripe.calls(INTENTS)
    assert call.form == {
        "amount": ["2000"],
        "currency": ["usd"],
        "customer": ["cus_1"],
        "payment_method": ["pm_1"],
        "off_session": ["true"],
        "confirm": ["true"],
        "metadata[org]": [str(org.pk)],
        "metadata[kind]": ["top_up"],
    }
    assert call.headers["Idempotency-Key"] == "topup-k"


def test_stripe_down_at_credits_checkout_is_a_message(
    fake_stripe, owner, org, customer, client_for
):
    fake_stripe.respond("POST", SESSIONS, 500, {"error": {"message": "down"}})
    response = client_for(owner, org).post(CHECKOUT, {"amount": "20"}, follow=True)
    assert response.status_code == 200
    assert b"did not answer" in response.content


@pytest.mark.parametrize(
    "amount",
    [
        "",
        "abc",
        "0",
        "4.99",
        "10000.01",
        "1.001",
        "-5",
        "NaN",
        "Infinity",
        "1e400",
        "9" * 400,
        " 5 5",
    ],
)
def test_bad_amounts_are_a_form_error_and_nothing_reaches_stripe(
    amount, fake_stripe, owner, org, customer, client_for
):
    response = client_for(owner, org).post(CHECKOUT, {"amount": amount})
    assert response.status_code == 400
    assert b'class="error"' in response.content
    assert stripe_posts(fake_stripe) == []


def test_missing_amount_is_a_form_error(fake_stripe, owner, org, client_for):
    assert client_for(owner, org).post(CHECKOUT, {}).status_code == 400
    assert stripe_posts(fake_stripe) == []


# --- Roles and tenancy ----------------------------------------------------------------


@pytest.mark.parametrize("path", [CHECKOUT, AUTO_TOP_UP])
def test_members_and_admins_are_refused(path, fake_stripe, teammate, admin, org, client_for):
    for user in (teammate, admin):
        response = client_for(user, org).post(path, {"amount": "20", "threshold": "5"})
        assert response.status_code == 403
    assert stripe_posts(fake_stripe) == []
    assert not BillingAccount.objects.filter(org=org, auto_top_up_amount__isnull=False).exists()


@pytest.mark.parametrize("path", [CHECKOUT, AUTO_TOP_UP])
def test_get_is_405_and_anonymous_goes_to_log_in(path, owner, org, client, client_for):
    assert client_for(owner, org).get(path).status_code == 405
    response = client.post(path, {"amount": "20"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_outsider_cannot_buy_for_another_org(fake_stripe, outsider, org, customer, client_for):
    """The session names Acme, but the outsider is no member: they act on their own
    personal org, never on Acme."""
    Customer.objects.create(org=outsider.memberships.get().org, stripe_customer_id="cus_out")
    fake_stripe.respond("POST", SESSIONS, 200, {"id": "cs_o", "url": "https://x.test/o"})
    client_for(outsider, org).post(CHECKOUT, {"amount": "20"})
    for call in fake_stripe.calls(SESSIONS):
        assert call.form["client_reference_id"] != [str(org.pk)]
        assert call.form["metadata[org]"] != [str(org.pk)]
        assert call.form["customer"] == ["cus_out"]


def test_outsider_cannot_change_another_orgs_auto_top_up(outsider, org, client_for):
    client_for(outsider, org).post(AUTO_TOP_UP, {"amount": "20", "threshold": "5"})
    assert not BillingAccount.objects.filter(org=org, auto_top_up_amount__isnull=False).exists()


def test_service_refuses_a_member_even_if_called_directly(teammate, org):
    from portal.errors import NotAllowed

    with pytest.raises(NotAllowed):
        credit_purchases.start_credits_checkout(
            org, teammate, Decimal(20), customer=lambda: "cus_x", success_url="s", cancel_url="c"
        )


# --- Auto top-up settings ---------------------------------------------------------------


def test_owner_sets_and_turns_off_auto_top_up(owner, org, client_for):
    client = client_for(owner, org)
    response = client.post(AUTO_TOP_UP, {"action": "on", "amount": "20", "threshold": "5.50"})
    assert response.status_code == 303
    account = BillingAccount.objects.get(org=org)
    assert (account.auto_top_up_amount, account.auto_top_up_threshold) == (
        Decimal("20.00"),
        Decimal("5.50"),
    )
    assert AuditLog.objects.filter(org=org, action="billing.auto_top_up_on", actor=owner).exists()
    client.post(AUTO_TOP_UP, {"action": "off"})
    account.refresh_from_db()
    assert account.auto_top_up_amount is None and account.auto_top_up_threshold is None
    assert AuditLog.objects.filter(org=org, action="billing.auto_top_up_off").exists()


@pytest.mark.parametrize(
    "data",
    [
        {"amount": "4.99", "threshold": "5"},
        {"amount": "10000.01", "threshold": "5"},
        {"amount": "20", "threshold": "-1"},
        {"amount": "20", "threshold": "10000.01"},
        {"amount": "20", "threshold": "1.001"},
        {"amount": "abc", "threshold": "5"},
        {"amount": "20"},
        {"threshold": "5"},
        {},
    ],
)
def test_bad_auto_top_up_settings_are_form_errors(data, owner, org, client_for):
    response = client_for(owner, org).post(AUTO_TOP_UP, {"action": "on", **data})
    assert response.status_code == 400
    assert not BillingAccount.objects.filter(org=org, auto_top_up_amount__isnull=False).exists()


def test_threshold_zero_is_allowed(owner, org, client_for):
    client_for(owner, org).post(AUTO_TOP_UP, {"amount": "5", "threshold": "0"})
    assert BillingAccount.objects.get(org=org).auto_top_up_threshold == Decimal("0.00")


# --- The billing page -----------------------------------------------------------------


def test_billing_page_shows_balance_forms_and_last_20_entries(owner, teammate, org, client_for):
    for n in range(25):
        credits.change_balance(org, Decimal("1.25"), CreditEntry.Kind.GRANT, note=f"grant {n}")
    page = client_for(owner, org).get("/billing/").content.decode()
    assert "31.25 USD" in page
    assert "Buy credits" in page and "Save auto top-up" in page
    assert "grant 24" in page and "grant 5" in page and "grant 4<" not in page
    member_page = client_for(teammate, org).get("/billing/").content.decode()
    assert "31.25 USD" in member_page and "grant 24" in member_page
    assert "Buy credits</button>" not in member_page and "Save auto top-up" not in member_page


def test_without_stripe_key_buying_says_not_configured(
    fake_stripe, owner, org, client_for, settings
):
    settings.STRIPE_SECRET_KEY = ""
    client = client_for(owner, org)
    page = client.get("/billing/").content.decode()
    assert "Buying credits is not configured" in page
    assert "Buy credits</button>" not in page
    response = client.post(CHECKOUT, {"amount": "20"}, follow=True)
    assert b"Buying credits is not configured" in response.content
    client.post(AUTO_TOP_UP, {"amount": "20", "threshold": "5"})
    assert not BillingAccount.objects.filter(org=org, auto_top_up_amount__isnull=False).exists()
    assert stripe_posts(fake_stripe) == []
    assert credit_purchases.maybe_start_top_up(org.pk) is False


# --- Webhooks: purchases ----------------------------------------------------------------


def test_paid_checkout_buys_credits_once(post_event, org):
    event = make_event("checkout.session.completed", session_obj(org, 2550))
    assert outcome(post_event(event)) == "processed"
    assert processed(event["id"]) == "applied: +25.50 credits"
    for _ in range(3):
        assert outcome(post_event(event)) == "duplicate"
    # The same session in another event (Stripe's retry under a new id) still counts once.
    again = make_event("checkout.session.completed", session_obj(org, 2550))
    post_event(again)
    assert processed(again["id"]) == "duplicate: already credited"
    (entry,) = entries(org)
    assert (entry.kind, entry.amount, entry.reference) == (
        "purchase",
        Decimal("25.50"),
        "checkout:cs_test_1",
    )
    assert balance(org) == Decimal("25.50")
    account = BillingAccount.objects.get(org=org)
    assert account.top_up_source_intent == "pi_buy_1"


def test_cents_add_up_exactly(post_event, org):
    for n, cents in enumerate([1001, 999, 333, 1]):
        post_event(make_event("checkout.session.completed", session_obj(org, cents, id_=f"cs{n}")))
    assert balance(org) == Decimal("23.34")
    assert sum(e.amount for e in entries(org)) == Decimal("23.34")


@pytest.mark.parametrize(
    "change",
    [
        {"payment_status": "unpaid"},
        {"metadata": {"kind": "something-else"}},
        {"currency": "eur"},
        {"client_reference_id": "999999", "metadata": {"org": "999999", "kind": "credits"}},
    ],
)
def test_checkouts_that_buy_nothing(change, post_event, org):
    event = make_event("checkout.session.completed", {**session_obj(org), **change})
    assert outcome(post_event(event)) == "processed"
    assert processed(event["id"]).startswith("ignored")
    assert not CreditEntry.objects.exists()


def test_async_payment_succeeded_buys_the_credits(post_event, org):
    pending = make_event("checkout.session.completed", session_obj(org, status="unpaid"))
    post_event(pending)
    post_event(make_event("checkout.session.async_payment_succeeded", session_obj(org)))
    assert balance(org) == Decimal("25.50")


def test_credits_payment_intent_saves_the_card_newest_wins(post_event, org):
    now = 1_900_000_000
    post_event(make_event("checkout.session.completed", session_obj(org, intent="pi_new"), now))
    post_event(
        make_event(
            "payment_intent.succeeded",
            intent_obj(org, "pi_new", kind="credits", method="pm_new"),
            now,
        )
    )
    # An older purchase's events arriving late change nothing.
    post_event(
        make_event(
            "payment_intent.succeeded",
            intent_obj(org, "pi_old", kind="credits", method="pm_old"),
            now - 60,
        )
    )
    account = BillingAccount.objects.get(org=org)
    assert (account.top_up_source_intent, account.top_up_payment_method) == ("pi_new", "pm_new")
    # A credits payment intent credits nothing itself: the session does.
    assert balance(org) == Decimal("25.50")


# --- Webhooks: refunds ------------------------------------------------------------------


def test_partial_then_full_refund_counts_each_refund_once(post_event, org):
    post_event(make_event("checkout.session.completed", session_obj(org, 2550)))
    partial = [refund("re_1", 1000)]
    full = [refund("re_2", 1550), refund("re_1", 1000)]
    post_event(make_event("charge.refunded", charge_obj(org, partial)))
    assert balance(org) == Decimal("15.50")
    post_event(make_event("charge.refunded", charge_obj(org, full)))
    post_event(make_event("charge.refunded", charge_obj(org, full)))  # a new delivery
    assert balance(org) == Decimal("0.00")
    refunds = entries(org, "refund")
    assert sorted((e.reference, e.amount) for e in refunds) == [
        ("refund:re_1", Decimal("-10.00")),
        ("refund:re_2", Decimal("-15.50")),
    ]


def test_refund_before_purchase_ends_at_the_right_total(post_event, org):
    post_event(make_event("charge.refunded", charge_obj(org, [refund("re_1", 550)])))
    assert balance(org) == Decimal("-5.50")
    post_event(make_event("checkout.session.completed", session_obj(org, 2550)))
    assert balance(org) == Decimal("20.00")


def test_refund_of_spent_credits_leaves_a_negative_balance(post_event, owner, org, client_for):
    post_event(make_event("checkout.session.completed", session_obj(org, 2000)))
    credits.change_balance(org, Decimal("-15.123456"), CreditEntry.Kind.USAGE, reference="call:1")
    post_event(make_event("charge.refunded", charge_obj(org, [refund("re_1", 2000)], amount=2000)))
    assert balance(org) == Decimal("-15.123456")
    account = BillingAccount.objects.get(org=org)
    assert account.available < 0
    assert b"paid calls are paused" in client_for(owner, org).get("/billing/").content


def test_failed_or_canceled_refunds_take_nothing(post_event, org):
    refunds = [refund("re_f", 500, "failed"), refund("re_c", 500, "canceled")]
    event = make_event("charge.refunded", charge_obj(org, refunds))
    post_event(event)
    assert not CreditEntry.objects.exists()


def test_refunds_of_other_charges_are_ignored(post_event, org):
    obj = charge_obj(org, [refund("re_1", 500)])
    obj["metadata"] = {"org": str(org.pk)}
    event = make_event("charge.refunded", obj)
    post_event(event)
    assert processed(event["id"]).startswith("ignored")
    assert not CreditEntry.objects.exists()


def test_refund_for_an_unknown_org_is_ignored(post_event, org):
    obj = charge_obj(org, [refund("re_1", 500)])
    obj["metadata"]["org"], obj["customer"] = "999999", "cus_nobody"
    event = make_event("charge.refunded", obj)
    assert outcome(post_event(event)) == "processed"
    assert processed(event["id"]) == "ignored: no matching organization"


def test_charge_without_a_refunds_list_uses_the_cumulative_total(post_event, org):
    """Newer API versions leave `refunds` off the charge: the cumulative amount_refunded
    is then taken once per cent, whatever the order of the events."""
    post_event(make_event("checkout.session.completed", session_obj(org, 2550)))

    def charge(refunded_cents: int) -> dict:
        obj = charge_obj(org, [])
        obj.pop("refunds")
        obj["amount_refunded"] = refunded_cents
        return obj

    post_event(make_event("charge.refunded", charge(1000)))
    post_event(make_event("charge.refunded", charge(2550)))
    post_event(make_event("charge.refunded", charge(1000)))  # late, older
    post_event(make_event("charge.refunded", charge(2550)))  # redelivered
    assert balance(org) == Decimal("0.00")
    assert [e.amount for e in entries(org, "refund")] == [Decimal("-10.00"), Decimal("-15.50")]


# --- Webhooks: top-ups ------------------------------------------------------------------


def test_top_up_success_credits_and_clears_the_flight(post_event, org):
    credits.account_for(org)
    BillingAccount.objects.filter(org=org).update(top_up_in_flight="pi_top_1")
    event = make_event("payment_intent.succeeded", intent_obj(org, cents=2000))
    post_event(event)
    post_event(event)
    post_event(make_event("payment_intent.succeeded", intent_obj(org, cents=2000)))
    (entry,) = entries(org)
    assert (entry.kind, entry.amount, entry.reference) == (
        "top_up",
        Decimal("20.00"),
        "pi:pi_top_1",
    )
    assert BillingAccount.objects.get(org=org).top_up_in_flight == ""


def test_top_up_success_leaves_another_flight_alone(post_event, org):
    credits.account_for(org)
    BillingAccount.objects.filter(org=org).update(top_up_in_flight="pi_other")
    post_event(make_event("payment_intent.succeeded", intent_obj(org, cents=2000)))
    assert BillingAccount.objects.get(org=org).top_up_in_flight == "pi_other"
    assert balance(org) == Decimal("20.00")


def test_top_up_failure_clears_the_flight_and_credits_nothing(post_event, org):
    credits.account_for(org)
    BillingAccount.objects.filter(org=org).update(top_up_in_flight="pi_top_1")
    obj = {
        **intent_obj(org),
        "status": "requires_payment_method",
        "last_payment_error": {"message": "Your card was declined."},
    }
    event = make_event("payment_intent.payment_failed", obj)
    post_event(event)
    assert processed(event["id"]) == "applied: top-up failed, no credits"
    assert BillingAccount.objects.get(org=org).top_up_in_flight == ""
    assert not CreditEntry.objects.exists()
    assert AuditLog.objects.filter(org=org, action="billing.top_up_failed").exists()


def test_payment_intents_of_unknown_orgs_or_kinds_are_ignored(post_event, org):
    unknown = intent_obj(org)
    unknown["metadata"]["org"], unknown["customer"] = "999999", "cus_nobody"
    other = intent_obj(org)
    other["metadata"] = {}
    for obj in (unknown, other):
        event = make_event("payment_intent.succeeded", obj)
        post_event(event)
        assert processed(event["id"]).startswith("ignored")
    assert not CreditEntry.objects.exists()


# --- Auto top-up: claiming and charging -------------------------------------------------


def ready(org, *, balance_="2", amount="20", threshold="5", method="pm_card") -> None:
    Customer.objects.get_or_create(org=org, defaults={"stripe_customer_id": "cus_known"})
    credits.change_balance(org, Decimal(balance_), CreditEntry.Kind.GRANT)
    BillingAccount.objects.filter(org=org).update(
        auto_top_up_amount=Decimal(amount),
        auto_top_up_threshold=Decimal(threshold),
        top_up_payment_method=method,
    )


@pytest.fixture
def queued(monkeypatch) -> list[tuple]:
    """The task is not sent to a broker: its arguments are kept, the test runs it."""
    sent: list[tuple] = []
    monkeypatch.setattr(tasks.start_top_up, "delay", lambda *args: sent.append(args))
    return sent


@pytest.mark.parametrize(
    "setup",
    [
        {"balance_": "5"},  # not below the threshold
        {"method": ""},  # no saved card
    ],
)
def test_no_top_up_when_not_due(setup, org, queued, django_capture_on_commit_callbacks):
    ready(org, **setup)
    with django_capture_on_commit_callbacks(execute=True):
        assert credit_purchases.maybe_start_top_up(org.pk) is False
    assert queued == []


def test_reserved_credits_count_and_off_means_no_top_up(
    org, queued, django_capture_on_commit_callbacks
):
    ready(org, balance_="10", threshold="5")
    BillingAccount.objects.filter(org=org).update(credits_reserved=Decimal("5.000001"))
    with django_capture_on_commit_callbacks(execute=True):
        assert credit_purchases.maybe_start_top_up(org.pk) is True  # 4.999999 < 5
    BillingAccount.objects.filter(org=org).update(top_up_in_flight="", auto_top_up_amount=None)
    assert credit_purchases.maybe_start_top_up(org.pk) is False


def test_top_up_is_charged_once_and_credited_by_its_webhook(
    fake_stripe, post_event, org, queued, django_capture_on_commit_callbacks
):
    ready(org)
    fake_stripe.respond("POST", INTENTS, 200, created_intent("pi_top_1", "succeeded"))
    with django_capture_on_commit_callbacks(execute=True):
        assert credit_purchases.maybe_start_top_up(org.pk) is True
        assert credit_purchases.maybe_start_top_up(org.pk) is False  # one at a time
    ((org_id, claim),) = queued
    account = BillingAccount.objects.get(org=org)
    assert account.top_up_in_flight == "pending"
    assert tasks.start_top_up(org_id, claim) == "started"
    assert tasks.start_top_up(org_id, claim) == "skipped"  # redelivered
    (call,) = fake_stripe.calls(INTENTS)
    expected_key = f"topup-{org.pk}-{int(account.top_up_started_at.timestamp() * 1_000_000)}"
    assert call.headers["Idempotency-Key"] == expected_key
    assert call.form["amount"] == ["2000"] and call.form["payment_method"] == ["pm_card"]
    assert BillingAccount.objects.get(org=org).top_up_in_flight == "pi_top_1"
    post_event(make_event("payment_intent.succeeded", intent_obj(org, cents=2000)))
    account.refresh_from_db()
    assert (account.top_up_in_flight, account.balance) == ("", Decimal("22.00"))


def test_webhook_before_the_task_records_the_intent(
    fake_stripe, post_event, org, queued, django_capture_on_commit_callbacks
):
    ready(org)
    fake_stripe.respond("POST", INTENTS, 200, created_intent("pi_top_1", "succeeded"))
    with django_capture_on_commit_callbacks(execute=True):
        credit_purchases.maybe_start_top_up(org.pk)
    # Stripe's webhook wins the race: the claim still says 'pending'.
    post_event(make_event("payment_intent.succeeded", intent_obj(org, cents=2000)))
    assert BillingAccount.objects.get(org=org).top_up_in_flight == "pending"
    assert tasks.start_top_up(*queued[0]) == "settled"
    account = BillingAccount.objects.get(org=org)
    assert (account.top_up_in_flight, account.balance) == ("", Decimal("22.00"))


def test_declined_top_up_releases_the_claim(
    fake_stripe, org, queued, django_capture_on_commit_callbacks
):
    ready(org)
    fake_stripe.respond(
        "POST",
        INTENTS,
        402,
        {
            "error": {
                "type": "card_error",
                "code": "card_declined",
                "message": "Your card was declined.",
            }
        },
    )
    with django_capture_on_commit_callbacks(execute=True):
        credit_purchases.maybe_start_top_up(org.pk)
    assert tasks.start_top_up(*queued[0]) == "failed"
    account = BillingAccount.objects.get(org=org)
    assert (account.top_up_in_flight, account.balance) == ("", Decimal("2.00"))
    assert AuditLog.objects.filter(org=org, action="billing.top_up_failed").exists()


def test_top_up_reads_the_card_from_the_purchase_intent(
    fake_stripe, org, queued, django_capture_on_commit_callbacks
):
    ready(org, method="")
    BillingAccount.objects.filter(org=org).update(top_up_source_intent="pi_buy_1")
    fake_stripe.respond(
        "GET",
        f"{INTENTS}/pi_buy_1",
        200,
        {"id": "pi_buy_1", "object": "payment_intent", "payment_method": "pm_saved"},
    )
    fake_stripe.respond("POST", INTENTS, 200, created_intent("pi_top_1", "processing"))
    with django_capture_on_commit_callbacks(execute=True):
        assert credit_purchases.maybe_start_top_up(org.pk) is True
    assert tasks.start_top_up(*queued[0]) == "started"
    (call,) = fake_stripe.calls(INTENTS)
    assert call.form["payment_method"] == ["pm_saved"]
    assert BillingAccount.objects.get(org=org).top_up_payment_method == "pm_saved"


def test_a_stale_flight_gives_way_after_an_hour(org, queued, django_capture_on_commit_callbacks):
    ready(org)
    BillingAccount.objects.filter(org=org).update(
        top_up_in_flight="pi_lost", top_up_started_at=timezone.now() - timedelta(minutes=59)
    )
    assert credit_purchases.maybe_start_top_up(org.pk) is False
    BillingAccount.objects.filter(org=org).update(
        top_up_started_at=timezone.now() - timedelta(minutes=61)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert credit_purchases.maybe_start_top_up(org.pk) is True
    assert len(queued) == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_callers_make_one_claim_and_one_charge(fake_stripe, org, queued):
    ready(org)
    fake_stripe.respond("POST", INTENTS, 200, created_intent("pi_top_1", "succeeded"))
    barrier = threading.Barrier(20)
    results: list[bool] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(credit_purchases.maybe_start_top_up(org.pk))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(results) == [False] * 19 + [True]
    assert len(queued) == 1
    for args in queued * 2:  # the task, and a redelivery of it
        tasks.start_top_up(*args)
    assert len(fake_stripe.calls(INTENTS)) == 1
    assert BillingAccount.objects.get(org=org).top_up_in_flight == "pi_top_1"
