"""What the site plan's `Subscription` and a listing's `ListingSubscription` mirror from
Stripe in the same way: the fields a subscription event sets, the order events apply in,
and what an invoice does to the status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from billing.models import SubscriptionStatus
from billing.plans import PAID_ACCESS
from portal.models import Organization

ENDED = (SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED)


@dataclass(frozen=True)
class EventContext:
    id: str
    type: str
    created: int
    rank: int


class MirroredSubscription(Protocol):
    """The fields both subscription mirrors share."""

    status: str
    stripe_subscription_id: str | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    trial_end: datetime | None
    cancel_at_period_end: bool
    past_due_since: datetime | None
    last_event_at: int
    last_event_rank: int
    granted_by_admin: bool


def epoch(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def period_of(sub: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """Newer API versions keep the period on the items, older ones on the subscription."""
    items = (sub.get("items") or {}).get("data") or [{}]
    start = sub.get("current_period_start") or items[0].get("current_period_start")
    end = sub.get("current_period_end") or items[0].get("current_period_end")
    return epoch(start), epoch(end)


def is_stale(row: MirroredSubscription, ctx: EventContext) -> bool:
    return (ctx.created, ctx.rank) < (row.last_event_at, row.last_event_rank)


def takes_over(row: MirroredSubscription, sub_id: str, status: str) -> bool:
    """Whether an event about subscription `sub_id` may replace the row's current one."""
    if row.stripe_subscription_id in (None, sub_id):
        return True
    # Another subscription is current: one that has ended gives way to any, a live one
    # only to a new live one (a plan switch), never to an old one's cancellation.
    return row.status in ENDED or (status in PAID_ACCESS and row.status not in PAID_ACCESS)


def as_applied(sub: dict[str, Any], ctx: EventContext) -> dict[str, Any]:
    """The subscription an event describes; a deletion's object may still say active."""
    if ctx.type == "customer.subscription.deleted":
        return {**sub, "status": SubscriptionStatus.CANCELED}
    return sub


def copy_state(row: MirroredSubscription, sub: dict[str, Any], ctx: EventContext) -> None:
    """Sets what a subscription event says on `row` (not saved)."""
    start, end = period_of(sub)
    status = sub["status"]
    row.status = status
    row.stripe_subscription_id = sub["id"]
    row.current_period_start = start or row.current_period_start
    row.current_period_end = end or row.current_period_end
    row.trial_end = epoch(sub.get("trial_end"))
    row.cancel_at_period_end = bool(sub.get("cancel_at_period_end"))
    if status != SubscriptionStatus.PAST_DUE:
        row.past_due_since = None
    elif row.past_due_since is None:
        row.past_due_since = epoch(ctx.created)
    row.last_event_at, row.last_event_rank = ctx.created, ctx.rank
    row.granted_by_admin = False


def apply_invoice(row: MirroredSubscription, ctx: EventContext) -> None:
    """A paid invoice ends a payment problem; a failed one starts one (not saved)."""
    if ctx.type == "invoice.paid" and row.status in (
        SubscriptionStatus.PAST_DUE,
        SubscriptionStatus.UNPAID,
    ):
        row.status, row.past_due_since = SubscriptionStatus.ACTIVE, None
    elif ctx.type == "invoice.payment_failed" and row.status in PAID_ACCESS:
        row.status = SubscriptionStatus.PAST_DUE
        row.past_due_since = row.past_due_since or epoch(ctx.created)
    row.last_event_at, row.last_event_rank = ctx.created, ctx.rank


def invoice_subscription_id(invoice: dict[str, Any]) -> str | None:
    if invoice.get("subscription"):
        return invoice["subscription"]
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return details.get("subscription")


def granted_state() -> dict[str, Any]:
    """What an operator's grant sets on a subscription mirror: active, with no Stripe
    subscription and no period of its own (calendar months)."""
    return {
        "status": SubscriptionStatus.ACTIVE,
        "stripe_subscription_id": None,
        "current_period_start": None,
        "current_period_end": None,
        "trial_end": None,
        "cancel_at_period_end": False,
        "past_due_since": None,
        "last_event_at": 0,
        "last_event_rank": 0,
        "granted_by_admin": True,
    }


def lock_org(org: Organization) -> None:
    """Serializes one org's webhook handlers: without it, two first events of a new
    subscription (Stripe sends several within the same second) both find no row, both
    insert one, and the loser answers 500 until Stripe retries it, hours later."""
    Organization.objects.select_for_update().filter(pk=org.pk).first()
