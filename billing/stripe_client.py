"""The only module that calls Stripe. Everything else passes plain values in and out.

Calls use the SDK's module-level resources with the key given per call, so tests (and
local development against localstripe) redirect them by setting `stripe.api_base`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import stripe
from django.conf import settings

from billing.models import Plan
from portal.errors import PaymentRequired, Unavailable

WEBHOOK_TOLERANCE_SECONDS = 300


class BillingNotConfigured(PaymentRequired):
    code = "billing_not_configured"


class StripeUnavailable(Unavailable):
    code = "stripe_unavailable"


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def _key() -> str:
    if not is_configured():
        raise BillingNotConfigured(
            "Billing is not configured on this portal: paid plans cannot be bought here. "
            "Ask an administrator to grant you a plan."
        )
    return settings.STRIPE_SECRET_KEY


def _call(method, *ids: str, **params: Any) -> dict[str, Any]:
    """One Stripe request, answered as plain dicts; network and API failures become a 503
    the user can retry. `ids` go positionally: `modify` takes its object's id no other
    way (stripe 16)."""
    try:
        return method(*ids, api_key=_key(), **params).to_dict()
    except stripe.StripeError as exc:
        raise StripeUnavailable(
            "The payment provider did not answer; please try again in a moment."
        ) from exc


# --- Customers, Checkout, Customer Portal ------------------------------------------


def create_customer(org_id: int, name: str, email: str) -> str:
    # The idempotency key makes a retried or concurrent first checkout reuse the customer.
    customer = _call(
        stripe.Customer.create,
        name=name,
        email=email or None,
        metadata={"org": str(org_id)},
        idempotency_key=f"portal-customer-org-{org_id}",
    )
    return customer["id"]


@dataclass(frozen=True)
class CheckoutRequest:
    org_id: int
    customer_id: str
    plan: Plan
    success_url: str
    cancel_url: str
    trial_days: int


def create_checkout_session(request: CheckoutRequest) -> str:
    plan = request.plan
    line_items: list[dict[str, Any]] = [{"price": plan.stripe_price_id, "quantity": 1}]
    if plan.stripe_overage_price_id:
        # Metered prices take no quantity: the Billing Meter supplies it.
        line_items.append({"price": plan.stripe_overage_price_id})
    metadata = {"org": str(request.org_id), "plan": plan.slug}
    return _subscription_checkout(request, line_items, metadata)


class _SubscriptionCheckout(Protocol):
    org_id: int
    customer_id: str
    success_url: str
    cancel_url: str
    trial_days: int


def _subscription_checkout(
    request: _SubscriptionCheckout, line_items: list[dict[str, Any]], metadata: dict[str, str]
) -> str:
    """A Checkout Session in subscription mode; the subscription carries the session's
    metadata, so every later event about it names the org and what was bought."""
    subscription_data: dict[str, Any] = {"metadata": metadata}
    if request.trial_days:
        subscription_data["trial_period_days"] = request.trial_days
    session = _call(
        stripe.checkout.Session.create,
        mode="subscription",
        customer=request.customer_id,
        client_reference_id=str(request.org_id),
        line_items=line_items,
        metadata=metadata,
        subscription_data=subscription_data,
        success_url=request.success_url,
        cancel_url=request.cancel_url,
    )
    return session["url"]


def create_portal_session(customer_id: str, return_url: str) -> str:
    session = _call(
        stripe.billing_portal.Session.create, customer=customer_id, return_url=return_url
    )
    return session["url"]


# --- Prepaid credits (issue #12) ------------------------------------------------------

CREDITS_PRODUCT_NAME = "Model Portal credits"


@dataclass(frozen=True)
class CreditsCheckoutRequest:
    org_id: int
    customer_id: str
    amount_cents: int
    success_url: str
    cancel_url: str


def create_credits_checkout_session(request: CreditsCheckoutRequest) -> str:
    """A Checkout Session in payment mode for `amount_cents` of credits; it saves the card
    (`setup_future_usage=off_session`) for auto top-ups. The PaymentIntent carries the same
    metadata, so its charge (and any refund of it) names the org and the kind."""
    metadata = {"org": str(request.org_id), "kind": "credits"}
    session = _call(
        stripe.checkout.Session.create,
        mode="payment",
        customer=request.customer_id,
        client_reference_id=str(request.org_id),
        line_items=[
            {
                "quantity": 1,
                "price_data": {
                    "currency": settings.PORTAL_CURRENCY,
                    "unit_amount": request.amount_cents,
                    "product_data": {"name": CREDITS_PRODUCT_NAME},
                },
            }
        ],
        metadata=metadata,
        payment_intent_data={"metadata": metadata, "setup_future_usage": "off_session"},
        success_url=request.success_url,
        cancel_url=request.cancel_url,
    )
    return session["url"]


@dataclass(frozen=True)
class TopUpIntent:
    id: str
    status: str


def create_top_up_payment_intent(
    customer_id: str, payment_method_id: str, amount_cents: int, org_id: int, idempotency_key: str
) -> TopUpIntent:
    """Charges the saved card off-session. A declined card is an API error (raised as
    StripeUnavailable, like any failure); the idempotency key makes a retried request
    answer with the same PaymentIntent instead of charging twice."""
    intent = _call(
        stripe.PaymentIntent.create,
        amount=amount_cents,
        currency=settings.PORTAL_CURRENCY,
        customer=customer_id,
        payment_method=payment_method_id,
        off_session=True,
        confirm=True,
        metadata={"org": str(org_id), "kind": "top_up"},
        idempotency_key=idempotency_key,
    )
    return TopUpIntent(id=intent["id"], status=intent.get("status") or "")


def payment_method_of_intent(payment_intent_id: str) -> str:
    """The payment method a (credits) PaymentIntent was paid with; '' if none."""
    intent = _call(stripe.PaymentIntent.retrieve, id=payment_intent_id)
    method = intent.get("payment_method") or ""
    return method["id"] if isinstance(method, dict) else method


# --- Connect: publisher accounts (issue #13) ------------------------------------------


def create_express_account(org_id: int, email: str) -> str:
    """A Connect Express account for the org's payouts. The idempotency key makes a retry
    after a lost answer (or a rolled-back first attempt) get the same account back."""
    account = _call(
        stripe.Account.create,
        type="express",
        email=email or None,
        metadata={"org": str(org_id)},
        capabilities={"transfers": {"requested": True}},
        idempotency_key=f"connect-account-{org_id}",
    )
    return account["id"]


def create_account_link(account_id: str, refresh_url: str, return_url: str) -> str:
    """A one-time link into Stripe's hosted onboarding; it expires within minutes, so one is
    made for every visit."""
    link = _call(
        stripe.AccountLink.create,
        account=account_id,
        type="account_onboarding",
        refresh_url=refresh_url,
        return_url=return_url,
    )
    return link["url"]


# --- Listing plans: a publisher's subscriptions (issue #13) ---------------------------

LISTING_PLAN_KIND = "listing_plan"


@dataclass(frozen=True)
class ListingPlanPrice:
    product_id: str
    price_id: str


def create_listing_plan_price(
    plan_id: int, name: str, unit_amount: int, currency: str
) -> ListingPlanPrice:
    """The monthly Price (with its Product, inline) of a listing plan. The platform sells
    it (separate charges and transfers): the publisher's share reaches them through the
    royalty ledger and the monthly payout, not a destination charge."""
    metadata = {"kind": LISTING_PLAN_KIND, "listing_plan": str(plan_id)}
    price = _call(
        stripe.Price.create,
        unit_amount=unit_amount,
        currency=currency,
        recurring={"interval": "month"},
        product_data={"name": name, "metadata": metadata},
        metadata=metadata,
        idempotency_key=f"listing-plan-price-{plan_id}",
    )
    product = price["product"]
    return ListingPlanPrice(
        product_id=product["id"] if isinstance(product, dict) else product, price_id=price["id"]
    )


@dataclass(frozen=True)
class ListingCheckoutRequest:
    org_id: int
    customer_id: str
    plan_id: int
    price_id: str
    success_url: str
    cancel_url: str
    trial_days: int


def create_listing_checkout_session(request: ListingCheckoutRequest) -> str:
    """A Checkout Session subscribing the org to a listing plan."""
    metadata = {
        "org": str(request.org_id),
        "kind": LISTING_PLAN_KIND,
        "listing_plan": str(request.plan_id),
    }
    line_items = [{"price": request.price_id, "quantity": 1}]
    return _subscription_checkout(request, line_items, metadata)


# --- Reading state -------------------------------------------------------------------


def retrieve_subscription(subscription_id: str) -> dict[str, Any]:
    return _call(stripe.Subscription.retrieve, id=subscription_id)


@dataclass(frozen=True)
class InvoiceSummary:
    id: str
    number: str
    status: str
    total_cents: int
    currency: str
    created: int
    hosted_invoice_url: str

    @property
    def total(self) -> Decimal:
        return Decimal(self.total_cents) / 100

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.created, tz=UTC)


def list_invoices(customer_id: str, limit: int = 24) -> list[InvoiceSummary]:
    invoices = _call(stripe.Invoice.list, customer=customer_id, limit=limit)
    return [
        InvoiceSummary(
            id=inv["id"],
            number=inv.get("number") or inv["id"],
            status=inv.get("status") or "",
            total_cents=inv.get("total") or 0,
            currency=inv.get("currency") or "usd",
            created=inv.get("created") or 0,
            hosted_invoice_url=inv.get("hosted_invoice_url") or "",
        )
        for inv in invoices["data"]
    ]


# --- Webhooks ------------------------------------------------------------------------


def _webhook_secrets() -> list[str]:
    """The platform endpoint's secret, and the Connect endpoint's: Stripe signs events of
    connected accounts (`account.updated`) with the secret of the endpoint they go to,
    which may be this same URL registered a second time, for Connect."""
    secrets = [settings.STRIPE_WEBHOOK_SECRET, settings.STRIPE_CONNECT_WEBHOOK_SECRET]
    return [secret for secret in secrets if secret]


def _verify_signature(body: str, signature: str) -> None:
    secrets = _webhook_secrets()
    if not secrets:
        raise stripe.SignatureVerificationError("No webhook secret is configured.", signature)
    for secret in secrets[:-1]:
        try:
            stripe.WebhookSignature.verify_header(
                body, signature, secret, WEBHOOK_TOLERANCE_SECONDS
            )
            return
        except stripe.SignatureVerificationError:
            continue
    stripe.WebhookSignature.verify_header(body, signature, secrets[-1], WEBHOOK_TOLERANCE_SECONDS)


def construct_event(payload: bytes, signature: str) -> dict[str, Any]:
    """The verified event as a dict; raises SignatureVerificationError (bad or stale
    signature) or ValueError (not a JSON object).

    What `stripe.Webhook.construct_event` does, minus its assumption that any valid
    JSON is an object: verify the signature over the raw body first, then parse.
    """
    body = payload.decode("utf-8")
    _verify_signature(body, signature)
    event = json.loads(body)
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    return event


# --- Catalog sync (manage.py sync_plans) ---------------------------------------------


def upsert_product(plan: Plan) -> str:
    fields = {"name": f"Model Portal {plan.name}", "metadata": {"plan": plan.slug}}
    if plan.stripe_product_id:
        return _call(stripe.Product.modify, plan.stripe_product_id, **fields)["id"]
    return _call(stripe.Product.create, idempotency_key=f"portal-product-{plan.slug}", **fields)[
        "id"
    ]


def price_matches(price_id: str, unit_amount: int, interval: str, currency: str) -> bool:
    price = _call(stripe.Price.retrieve, id=price_id)
    recurring = price.get("recurring") or {}
    return (
        bool(price.get("active"))
        and price.get("unit_amount") == unit_amount
        and price.get("currency") == currency
        and recurring.get("interval") == interval
    )


def create_price(plan: Plan, product_id: str) -> str:
    return _call(
        stripe.Price.create,
        product=product_id,
        unit_amount=plan.price_cents,
        currency=plan.currency,
        recurring={"interval": plan.interval},
        metadata={"plan": plan.slug},
    )["id"]


def create_overage_price(plan: Plan, product_id: str, meter_id: str) -> str:
    # The meter counts overage in cents (already priced at each model's listing price and
    # rounded by us): one unit is one cent.
    return _call(
        stripe.Price.create,
        product=product_id,
        currency=plan.currency,
        unit_amount=1,
        recurring={"interval": plan.interval, "usage_type": "metered", "meter": meter_id},
        metadata={"plan": plan.slug, "kind": "overage"},
    )["id"]


def deactivate_price(price_id: str) -> None:
    _call(stripe.Price.modify, price_id, active=False)


def ensure_meter() -> str:
    """The Billing Meter that overage (in cents) is reported to, created on first sync."""
    event_name = settings.STRIPE_METER_EVENT_NAME
    for meter in _call(stripe.billing.Meter.list, status="active", limit=100)["data"]:
        if meter["event_name"] == event_name:
            return meter["id"]
    return _call(
        stripe.billing.Meter.create,
        display_name="Model Portal overage (cents)",
        event_name=event_name,
        default_aggregation={"formula": "sum"},
        customer_mapping={"type": "by_id", "event_payload_key": "stripe_customer_id"},
        value_settings={"event_payload_key": "value"},
    )["id"]


# --- Metered usage ---------------------------------------------------------------------


def report_meter_event(customer_id: str, cents: int, identifier: str, timestamp: int) -> None:
    """Raises StripeUnavailable when Stripe did not acknowledge; the caller retries later
    with the same identifier, which Stripe deduplicates."""
    _call(
        stripe.billing.MeterEvent.create,
        event_name=settings.STRIPE_METER_EVENT_NAME,
        identifier=identifier,
        timestamp=timestamp,
        payload={"stripe_customer_id": customer_id, "value": str(cents)},
    )


# --- Connect payouts -----------------------------------------------------------------


def create_transfer(
    destination: str, amount_cents: int, currency: str, idempotency_key: str, metadata: dict
) -> str:
    """A transfer from the platform's balance to a publisher's Connect account (separate
    charges and transfers); the idempotency key makes a retried payout answer with the
    same transfer instead of paying twice."""
    transfer = _call(
        stripe.Transfer.create,
        amount=amount_cents,
        currency=currency,
        destination=destination,
        metadata=metadata,
        idempotency_key=idempotency_key,
    )
    return transfer["id"]
