"""Telling callers that a model version is deprecated: one e-mail to each org's owners and
one `model.deprecated` account webhook per org, the way `billing.alerts` sends
`billing.threshold`.

`notify_callers` runs inside the deprecation's transaction. The unique key of
`DeprecationNotice` (version, org) makes each org hear once however often the deprecation
is repeated or retried: each insert is in its own savepoint, so a conflict leaves the
caller's transaction intact. The e-mail and the webhook go once it commits (`on_commit`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial

from django.conf import settings
from django.core.mail import BadHeaderError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.crypto import salted_hmac

from inference.models import Prediction
from models_hub.models import DeprecationNotice, ModelVersion
from portal import owner_mail

logger = logging.getLogger(__name__)

EVENT = "model.deprecated"


def callers(version: ModelVersion, since: datetime) -> list[int]:
    """The orgs that called this version since `since`."""
    calls = Prediction.objects.filter(version=version, created_at__gte=since)
    return sorted(set(calls.values_list("org_id", flat=True)))


def notify_callers(version: ModelVersion, since: datetime) -> list[DeprecationNotice]:
    """The notices this call created (none for orgs already told)."""
    created = []
    for org_id in callers(version, since):
        notice = _create_once(version, org_id)
        if notice is not None:
            created.append(notice)
            transaction.on_commit(partial(notify, notice.pk), robust=True)
    return created


def _create_once(version: ModelVersion, org_id: int) -> DeprecationNotice | None:
    try:
        with transaction.atomic():
            return DeprecationNotice.objects.create(version=version, org_id=org_id)
    except IntegrityError:
        return None


# --- After commit: e-mail and webhook --------------------------------------------------


def _notice(notice_id: int) -> DeprecationNotice | None:
    related = ("org", "version__listing")
    return DeprecationNotice.objects.select_related(*related).filter(pk=notice_id).first()


def notify(notice_id: int) -> None:
    """E-mails the org's owners and queues the account webhook; a mail failure is logged
    and does not stop the webhook."""
    notice = _notice(notice_id)
    if notice is None:
        return
    try:
        email_owners(notice)
    except (BadHeaderError, OSError):  # smtplib's errors are OSErrors
        logger.exception("Deprecation e-mail for org %s not sent", notice.org.slug)
    queue_webhook(notice)


def email_subject(notice: DeprecationNotice) -> str:
    version = notice.version
    return f"Model Portal: {version.listing.name} version {version.id} is deprecated"


def email_body(notice: DeprecationNotice) -> str:
    version = notice.version
    slug = version.listing.slug
    link = settings.SITE_URL.rstrip("/") + reverse("model_detail", args=[slug])
    reason = f"\n\n{version.deprecation_reason}" if version.deprecation_reason else ""
    return (
        f"{notice.org.name} called {slug}:{version.id} in the last 90 days. That version is "
        f"deprecated and retires on {version.retires_at:%Y-%m-%d %H:%M} UTC: from then on, "
        f"calls pinned to it are refused (410 version_retired). Calls to {slug} without a "
        f"version run its newest version.{reason}\n\nThe model: {link}\n"
    )


def email_owners(notice: DeprecationNotice) -> int:
    return owner_mail.email_owners(notice.org_id, email_subject(notice), email_body(notice))


def queue_webhook(notice: DeprecationNotice) -> None:
    from portal.account_webhooks import webhook_url_for

    if webhook_url_for(notice.org_id, EVENT) is None:
        return
    from models_hub.tasks import deliver_deprecation_notice

    deliver_deprecation_notice.delay(notice.pk)


def event_payload(notice: DeprecationNotice) -> dict:
    version = notice.version
    return {
        "type": EVENT,
        "timestamp": _iso(notice.created_at),
        "data": {
            "model": version.listing.slug,
            "version": version.id,
            "deprecated_at": _iso(version.deprecated_at),
            "retires_at": _iso(version.retires_at),
            "reason": version.deprecation_reason,
        },
    }


def message_id(notice: DeprecationNotice) -> str:
    """The webhook-id: the same for every attempt at this notice, and no counter."""
    return "msg_" + salted_hmac("models_hub.deprecation.webhook", str(notice.pk)).hexdigest()[:32]


def deliver(notice_id: int) -> bool:
    """One delivery attempt to the org's account webhook as it is now (False: none set for
    the event any more). WebhookRefused and DeliveryFailed as in
    `inference.webhooks.deliver_signed`."""
    from inference.webhooks import deliver_signed
    from portal.account_webhooks import webhook_url_for

    notice = _notice(notice_id)
    if notice is None:
        return False
    url = webhook_url_for(notice.org_id, EVENT)
    if url is None:
        return False
    deliver_signed(
        url, notice.org.webhook_secret, message_id(notice), event_payload(notice), event=EVENT
    )
    return True


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
