"""Spend cap and allowance alerts (issue #12): at 50, 80 and 100% of a limit, once per
period, an e-mail to the org's owners and the `billing.threshold` account webhook.

`check_thresholds` runs inside the settlement transaction, after the period's counters
moved. The unique key of `BillingAlert` makes each threshold fire once however many
settlements cross it at the same time: each insert is in its own savepoint, so the one
that loses the race (IntegrityError) leaves the caller's transaction intact. The e-mail
and the webhook go only once the transaction commits (`on_commit`).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.core.mail import BadHeaderError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.crypto import salted_hmac

from billing.models import BillingAlert, UsagePeriod
from billing.prices import decimal_string
from portal import owner_mail

logger = logging.getLogger(__name__)

THRESHOLDS = (50, 80, 100)  # percent, ascending
EVENT = "billing.threshold"
SUBJECT_LABELS = {
    BillingAlert.Subject.SPEND_CAP: "spend cap",
    BillingAlert.Subject.ALLOWANCE: "plan allowance",
}


def reached(used: Decimal, limit: Decimal) -> list[int]:
    """The thresholds that `used` reaches of `limit` (exact: no rounding of the percent)."""
    return [threshold for threshold in THRESHOLDS if used * 100 >= limit * threshold]


def check_thresholds(
    period: UsagePeriod, allowance: Decimal | None, spend_cap: Decimal | None
) -> list[BillingAlert]:
    """The alerts this call created (usually none). Pass the period as it is now (fresh
    counters), the plan's allowance and the org's spend cap for it; a limit that is None
    or not above zero has no alerts. Allowance used counts against the allowance, what
    the org paid beyond its plan (`period.spent`) against the spend cap."""
    due = [
        (subject, limit, used, threshold)
        for subject, limit, used in (
            (BillingAlert.Subject.ALLOWANCE, allowance, period.allowance_used),
            (BillingAlert.Subject.SPEND_CAP, spend_cap, period.spent),
        )
        if limit is not None and limit > 0
        for threshold in reached(used, limit)
    ]
    if not due:
        return []
    # One indexed read in the usual case (every reached threshold fired already).
    fired = set(
        BillingAlert.objects.filter(org_id=period.org_id, period_start=period.start).values_list(
            "subject", "threshold"
        )
    )
    created = []
    for subject, limit, used, threshold in due:
        if (subject, threshold) in fired:
            continue
        alert = _create_once(period, subject, threshold, limit, used)
        if alert is not None:
            created.append(alert)
            transaction.on_commit(partial(notify, alert.pk), robust=True)
    return created


def _create_once(
    period: UsagePeriod, subject: str, threshold: int, limit: Decimal, used: Decimal
) -> BillingAlert | None:
    """The new alert, or None when another settlement created it first (that one's
    transaction sends it). A savepoint: the caller's transaction survives the conflict."""
    try:
        with transaction.atomic():
            return BillingAlert.objects.create(
                org_id=period.org_id,
                period_start=period.start,
                subject=subject,
                threshold=threshold,
                limit=limit,
                used=used,
            )
    except IntegrityError:
        return None


# --- After commit: e-mail and webhook --------------------------------------------------


def notify(alert_id: int) -> None:
    """E-mails the org's owners and queues the account webhook; each failure is logged and
    does not stop the other (on_commit(robust=True) runs this after the settlement)."""
    alert = BillingAlert.objects.select_related("org").filter(pk=alert_id).first()
    if alert is None:
        return
    try:
        email_owners(alert)
    except (BadHeaderError, OSError):  # smtplib's errors are OSErrors
        logger.exception("Billing alert e-mail for org %s not sent", alert.org.slug)
    queue_webhook(alert)


def period_end(alert: BillingAlert) -> object:
    period = UsagePeriod.objects.filter(org_id=alert.org_id, start=alert.period_start).first()
    return period.end if period is not None else None


def email_subject(alert: BillingAlert) -> str:
    label = SUBJECT_LABELS[alert.subject]
    return f"Model Portal: {alert.threshold}% of your monthly {label} used ({alert.org.name})"


def email_body(alert: BillingAlert) -> str:
    label = SUBJECT_LABELS[alert.subject]
    currency = settings.PORTAL_CURRENCY.upper()
    end = period_end(alert)
    until = f" The period ends on {end:%Y-%m-%d %H:%M} UTC." if end else ""
    if alert.threshold < 100:
        consequence = ""
    elif alert.subject == BillingAlert.Subject.SPEND_CAP:
        consequence = (
            "\n\nCalls that would be paid beyond your plan (credits or overage) are refused "
            "until the period ends or an owner raises the spend cap."
        )
    else:
        consequence = (
            "\n\nFurther calls are paid from credits or billed as overage where your plan "
            "allows it, and refused otherwise."
        )
    link = settings.SITE_URL.rstrip("/") + reverse("billing_overview")
    return (
        f"{alert.org.name} has used {alert.threshold}% of its {label} for this billing "
        f"period: {decimal_string(alert.used)} of {decimal_string(alert.limit)} {currency}."
        f"{until}{consequence}\n\nUsage and limits: {link}\n"
    )


def email_owners(alert: BillingAlert) -> int:
    return owner_mail.email_owners(alert.org_id, email_subject(alert), email_body(alert))


def queue_webhook(alert: BillingAlert) -> None:
    from portal.account_webhooks import webhook_url_for

    if webhook_url_for(alert.org_id, EVENT) is None:
        return
    from billing.tasks import deliver_billing_alert

    deliver_billing_alert.delay(alert.pk)


def event_payload(alert: BillingAlert) -> dict:
    end = period_end(alert)
    return {
        "type": EVENT,
        "timestamp": _iso(alert.created_at),
        "data": {
            "subject": alert.subject,
            "threshold": alert.threshold,
            "limit": decimal_string(alert.limit),
            "used": decimal_string(alert.used),
            "currency": settings.PORTAL_CURRENCY,
            "period": {"start": _iso(alert.period_start), "end": _iso(end) if end else None},
        },
    }


def message_id(alert: BillingAlert) -> str:
    """The webhook-id: the same for every attempt at this alert, and not a counter that
    tells customers how many alerts the portal sends."""
    return "msg_" + salted_hmac("billing.alert.webhook", str(alert.pk)).hexdigest()[:32]


def deliver(alert_id: int) -> bool:
    """One delivery attempt of the alert's event to the org's account webhook as it is now
    (False: none configured for the event any more, nothing sent). WebhookRefused and
    DeliveryFailed as in `inference.webhooks.deliver_signed`."""
    from inference.webhooks import deliver_signed
    from portal.account_webhooks import webhook_url_for

    alert = BillingAlert.objects.select_related("org").filter(pk=alert_id).first()
    if alert is None:
        return False
    url = webhook_url_for(alert.org_id, EVENT)
    if url is None:
        return False
    deliver_signed(
        url, alert.org.webhook_secret, message_id(alert), event_payload(alert), event=EVENT
    )
    return True


def _iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")
