"""Listing prices with history: set a price from a date on, read the price in force at a
moment. Rows are only ever added (see `ListingPrice`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from billing import hot, publishers
from billing.models import MONEY_DIGITS, MONEY_PLACES, ListingPrice
from models_hub.models import ModelListing
from portal.auth import PUBLISHER_ROLE
from portal.errors import InvalidInput, NotFound
from portal.hotcache import HotCache, Stamp
from portal.services import require_role

PARTS = ("input_per_million", "output_per_million", "per_request", "per_second")
_MAX = Decimal(10) ** (MONEY_DIGITS - MONEY_PLACES)


def parse_amount(value: object, name: str) -> Decimal:
    """A price part as a Decimal: finite, not negative, at most 6 decimal places and
    below 1,000,000 (what the column holds). Floats are refused: they are not money."""
    if isinstance(value, float | bool):
        raise InvalidInput(f"{name} must be a decimal string, not {value!r}.", param=name)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput(f"{name} is not a decimal number: {value!r}.", param=name) from None
    if not amount.is_finite() or amount < 0:
        raise InvalidInput(f"{name} must be a number of zero or more.", param=name)
    # The bound first: quantizing a huge amount ("1e400") exceeds Decimal's precision.
    if amount >= _MAX or amount != amount.quantize(Decimal(1).scaleb(-MONEY_PLACES)):
        raise InvalidInput(
            f"{name} takes at most {MONEY_PLACES} decimal places and is below {_MAX}.",
            param=name,
        )
    return amount


def _latest_before(when: datetime):
    return ListingPrice.objects.filter(effective_from__lte=when).order_by("-effective_from", "-pk")


def free_price(listing: ModelListing) -> ListingPrice:
    """The price of a listing that never had one: all zero (unsaved)."""
    return ListingPrice(listing=listing, currency=settings.PORTAL_CURRENCY)


# A listing's whole price history, oldest first: read by every admission, changed by
# `set_price` (see billing.hot).
_history: HotCache[list[ListingPrice]] = HotCache()


def _history_of(listing: ModelListing) -> list[ListingPrice]:
    return list(ListingPrice.objects.filter(listing=listing).order_by("effective_from", "pk"))


def price_at(
    listing: ModelListing,
    when: datetime | None = None,
    stamp: Stamp | None = None,
    announced_by: datetime | None = None,
) -> ListingPrice:
    """The price in force at `when` (now by default): the row with the latest
    `effective_from` at or before it, the later-created one on a tie; free if none.
    `stamp` is the call's `PlanState.stamp`, where there is one. `announced_by` is a
    subscriber's price lock: prices created after it do not apply to them yet."""
    when = when or timezone.now()
    current = hot.config_part(stamp) if stamp is not None else hot.config_stamp()
    history = _history.get(listing.pk, current, lambda: _history_of(listing))
    in_force = [
        row
        for row in history
        if row.effective_from <= when and (announced_by is None or row.created_at <= announced_by)
    ]
    return in_force[-1] if in_force else free_price(listing)


def prices_at(
    listings: Iterable[ModelListing], when: datetime | None = None
) -> dict[int, ListingPrice]:
    """`price_at` for many listings in one query (catalog pages), keyed by listing id."""
    when = when or timezone.now()
    listings = list(listings)
    latest = _latest_before(when).filter(listing=OuterRef("listing")).values("pk")[:1]
    rows = ListingPrice.objects.filter(
        listing__in=[listing.pk for listing in listings], pk=Subquery(latest)
    )
    found = {row.listing_id: row for row in rows}
    return {listing.pk: found.get(listing.pk) or free_price(listing) for listing in listings}


@transaction.atomic
def set_price(
    listing: ModelListing,
    *,
    effective_from: datetime | None = None,
    actor: AbstractBaseUser | None = None,
    notice: timedelta = timedelta(0),
    **parts: object,
) -> ListingPrice:
    """Adds a price from `effective_from` (now by default; a future date is allowed, a
    past one is not: it would reprice calls already made), at least `notice` ahead. Parts
    left out keep the value of the price in force at that date. Nothing is written if any
    part is invalid."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise InvalidInput(f"Unknown price parts: {', '.join(sorted(unknown))}.")
    amounts = {
        name: parse_amount(value, name) for name, value in parts.items() if value is not None
    }
    # Serializes changes to one listing's price, so that two partial changes at once
    # cannot both start from the same previous price and lose one another's part. The
    # clock is read only once the lock is held: read before it, a change that waited
    # could take effect before the one it waited for and never see its part.
    ModelListing.objects.select_for_update().filter(pk=listing.pk).first()
    now = timezone.now()
    effective_from = effective_from or now
    if effective_from < now:
        raise InvalidInput("A price cannot take effect in the past.", param="effective_from")
    if effective_from < now + notice:
        hours = notice / timedelta(hours=1)
        raise InvalidInput(
            f"A price change takes effect at least {hours:g} hours ahead, so that the "
            "customers who call this model can see it coming.",
            param="effective_from",
        )
    # From the database, not the cache: a change committed while this one waited for the
    # lock may not have reached the cache's generation yet.
    previous = _latest_before(effective_from).filter(listing=listing).first()
    previous = previous or free_price(listing)
    new_parts = {name: amounts.get(name, getattr(previous, name)) for name in PARTS}
    # The whole new price, parts kept from the previous one included, is what customers pay.
    publishers.require_onboarded_for_paid_price(listing, new_parts, actor)
    return ListingPrice.objects.create(
        listing=listing,
        currency=settings.PORTAL_CURRENCY,
        effective_from=effective_from,
        created_by=actor if actor is not None and actor.pk else None,
        **new_parts,
    )


def publisher_notice() -> timedelta:
    """How far ahead a publisher must announce a price change (operators need not)."""
    return timedelta(hours=settings.PRICE_CHANGE_NOTICE_HOURS)


def schedule_publisher_price(
    listing: ModelListing, actor: AbstractBaseUser, effective_from: datetime, **parts: object
) -> ListingPrice:
    """A publisher's price change (owners and admins of the listing's org): it takes effect
    at `effective_from`, at least `publisher_notice()` ahead, so that no customer pays a
    new price it could not see coming; the customers it affects are e-mailed once it is
    committed. Operators price through `set_price` directly."""
    if listing.org_id is None:
        # The operator's own listings: no org of publishers may price them.
        raise NotFound("Model not found.")
    require_role(listing.org, actor, PUBLISHER_ROLE)
    price = set_price(
        listing, effective_from=effective_from, actor=actor, notice=publisher_notice(), **parts
    )
    transaction.on_commit(partial(_announce, price.pk), robust=True)
    return price


def _announce(price_id: int) -> None:
    # Imported here: billing.tasks imports modules that import this one.
    from billing.tasks import announce_price_change

    announce_price_change.delay(price_id)


def decimal_string(amount: Decimal) -> str:
    """A Decimal for the API: no exponent, no trailing zeros ("0", "0.5", "1.5", "100")."""
    return format(amount.normalize(), "f")
