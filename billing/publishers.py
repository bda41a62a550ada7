"""Publishers on Stripe Connect (issue #13): onboarding an org's Express account, mirroring
what Stripe's `account.updated` events say about it, and keeping paid prices to publishers
Stripe can pay out.

Stripe is the source of truth: `PublisherAccount` only mirrors it, and an older event never
overwrites what a newer one applied.

This module must not import `billing.stripe_events` (which dispatches webhooks here).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from billing import stripe_client
from billing.models import PublisherAccount
from models_hub.models import ModelListing
from portal.errors import Conflict
from portal.models import Organization, Role
from portal.services import audit, require_role

NOT_STARTED = "not_started"
PENDING = "pending"
ONBOARDED = "onboarded"


class EventLike(Protocol):
    """What the webhook handler here needs of `billing.stripe_mirror.EventContext`."""

    id: str
    type: str
    created: int


def account_of(org: Organization) -> PublisherAccount | None:
    return PublisherAccount.objects.filter(org=org).first()


def onboarding_state(account: PublisherAccount | None) -> str:
    """Where the org is in onboarding: not started, details pending at Stripe, or done."""
    if account is None:
        return NOT_STARTED
    return ONBOARDED if account.onboarded else PENDING


# --- Onboarding (browser, owners) --------------------------------------------------------


def _ensure_account(org: Organization, actor: AbstractBaseUser) -> str:
    """The org's Connect account id, creating the account exactly once."""
    with transaction.atomic():
        # The org row's lock makes a second, concurrent first click wait and reuse the
        # account the first one made, instead of making another at Stripe.
        Organization.objects.select_for_update().filter(pk=org.pk).first()
        account = account_of(org)
        if account is not None:
            return account.stripe_account_id
        account_id = stripe_client.create_express_account(org.pk, getattr(actor, "email", ""))
        PublisherAccount.objects.create(org=org, stripe_account_id=account_id)
        audit(org, actor, "billing.publisher_account_created", account_id)
        return account_id


def start_onboarding(
    org: Organization, actor: AbstractBaseUser, refresh_url: str, return_url: str
) -> str:
    """The URL of Stripe's hosted onboarding for the org's Express account (owners only).
    Every call makes a fresh link: links are single-use and expire within minutes."""
    require_role(org, actor, Role.OWNER)
    if not stripe_client.is_configured():
        raise stripe_client.BillingNotConfigured(
            "Payouts are not configured on this portal: publishers cannot be onboarded here."
        )
    account_id = _ensure_account(org, actor)
    url = stripe_client.create_account_link(account_id, refresh_url, return_url)
    audit(org, actor, "billing.publisher_onboarding_started", account_id)
    return url


# --- Webhooks (called by billing.stripe_events.process_event, in its transaction) --------


def apply_account_updated(obj: dict[str, Any], ctx: EventLike) -> str:
    """`account.updated`: copies the account's flags onto the mirror, unless a newer event
    was already applied (events arrive in any order, and retries come hours late)."""
    account = (
        PublisherAccount.objects.select_for_update().filter(stripe_account_id=obj.get("id")).first()
    )
    if account is None:
        return "ignored: not one of our publisher accounts"
    if ctx.created < account.last_event_at:
        return "stale: a newer event was already applied"
    account.charges_enabled = bool(obj.get("charges_enabled"))
    account.payouts_enabled = bool(obj.get("payouts_enabled"))
    account.details_submitted = bool(obj.get("details_submitted"))
    account.last_event_at = ctx.created
    # Only what Stripe owns: an operator's fee_percent, saved meanwhile, stays.
    account.save(
        update_fields=[
            "charges_enabled",
            "payouts_enabled",
            "details_submitted",
            "last_event_at",
            "updated_at",
        ]
    )
    audit(
        account.org,
        None,
        "billing.publisher_account_synced",
        account.stripe_account_id,
        charges_enabled=account.charges_enabled,
        payouts_enabled=account.payouts_enabled,
        details_submitted=account.details_submitted,
    )
    return f"applied: {onboarding_state(account)}"


# --- Paid prices ------------------------------------------------------------------------


def require_onboarded_for_paid_price(
    listing: ModelListing, parts: Mapping[str, Decimal], actor: AbstractBaseUser | None
) -> None:
    """Refuses a non-zero price on a publisher's listing until Stripe can pay the publisher
    out: otherwise customers would pay for calls whose share could never be transferred.
    Operators (the CLI, with no actor, and staff) may price any listing; the operator's own
    listings (no org) never need Connect."""
    if listing.org_id is None or actor is None or actor.is_staff:
        return
    if not any(amount > 0 for amount in parts.values()):
        return
    account = PublisherAccount.objects.filter(org_id=listing.org_id).first()
    if account is None or not account.onboarded:
        raise Conflict(
            f"{listing.org.name} cannot charge for {listing.name} yet: finish setting up "
            "payouts on the publisher page (/publisher/) first. A free price is allowed.",
            code="publisher_not_onboarded",
        )
