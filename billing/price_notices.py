"""Announcing a publisher's scheduled price change (issue #13) to the customers it
affects: the owners of each org that called the listing in the last 30 days get one
e-mail, once per change and org (the unique key of `PriceChangeNotice`), however often
the announcement runs (Celery redelivers a task whose worker died)."""

from __future__ import annotations

import logging
from datetime import UTC, timedelta

from django.conf import settings
from django.core.mail import BadHeaderError
from django.db import IntegrityError, transaction
from django.urls import reverse

from billing.models import ListingPrice, PriceChangeNotice
from billing.prices import PARTS, decimal_string, price_at
from billing.publisher_catalog import recent_caller_orgs
from portal import owner_mail

logger = logging.getLogger(__name__)

PART_LABELS = {
    "input_per_million": "per 1M input tokens",
    "output_per_million": "per 1M output tokens",
    "per_request": "per request",
    "per_second": "per second",
}


def announce(price_id: int) -> int:
    """E-mails the owners of every affected org not yet told of this change; the number
    of orgs told now. Each org is claimed before its e-mail: at most once, never twice."""
    price = ListingPrice.objects.select_related("listing").filter(pk=price_id).first()
    if price is None:
        return 0
    subject, body = email_subject(price), email_body(price)
    told = 0
    for org_id in recent_caller_orgs(price.listing, price.created_at):
        if not _claim(price, org_id):
            continue
        try:
            owner_mail.email_owners(org_id, subject, body)
        except (BadHeaderError, OSError):  # smtplib's errors are OSErrors
            logger.exception("Price change %s e-mail to org %s not sent", price.pk, org_id)
        told += 1
    return told


def _claim(price: ListingPrice, org_id: int) -> bool:
    """False when this org was already told (a savepoint keeps a conflict harmless)."""
    try:
        with transaction.atomic():
            PriceChangeNotice.objects.create(price=price, org_id=org_id)
    except IntegrityError:
        return False
    return True


def email_subject(price: ListingPrice) -> str:
    when = price.effective_from.astimezone(UTC)
    return f"Model Portal: the price of {price.listing.name} changes on {when:%Y-%m-%d}"


def email_body(price: ListingPrice) -> str:
    # The price in force just before the change: what the org pays until then.
    before = price_at(price.listing, price.effective_from - timedelta(microseconds=1))
    currency = settings.PORTAL_CURRENCY.upper()
    lines = [
        f"- {PART_LABELS[part]}: {decimal_string(getattr(before, part))} -> "
        f"{decimal_string(getattr(price, part))} {currency}"
        for part in PARTS
    ]
    link = settings.SITE_URL.rstrip("/") + reverse("model_detail", args=[price.listing.slug])
    when = price.effective_from.astimezone(UTC)
    return (
        f"Your organization called {price.listing.name} in the last 30 days. Its publisher "
        f"changes its pay-as-you-go price from {when:%Y-%m-%d %H:%M} UTC on; calls made "
        f"before then keep the current price.\n\n" + "\n".join(lines) + f"\n\nModel: {link}\n"
    )
