"""The org's account webhook: where account events (`billing.threshold`,
`model.deprecated`) go (API.md, "Outgoing webhooks"). Read and written for the caller's
own org only; every change is audited."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from portal.errors import InvalidInput
from portal.models import ACCOUNT_WEBHOOK_EVENTS, AccountWebhook, Organization, Role
from portal.services import audit, require_role


@dataclass(frozen=True)
class AccountWebhookConfig:
    url: str | None  # None: no account webhook
    events: list[str]

    def as_dict(self) -> dict:
        return {"url": self.url, "events": list(self.events)}


def get_account_webhook(org: Organization) -> AccountWebhookConfig:
    row = AccountWebhook.objects.filter(org=org).first()
    if row is None:
        return AccountWebhookConfig(None, list(ACCOUNT_WEBHOOK_EVENTS))
    return AccountWebhookConfig(row.url or None, list(row.events))


def webhook_url_for(org_id: int, event: str) -> str | None:
    """The URL to send `event` to, or None when the org has not asked for it."""
    row = AccountWebhook.objects.filter(org_id=org_id).first()
    return row.url if row is not None and row.wants(event) else None


def clean_url(url: object) -> str:
    """The URL as stored ("" for none), or InvalidInput; SSRF rules as for prediction
    webhooks (inference.webhooks.validate_webhook_url)."""
    from inference.webhooks import WebhookRefused, validate_webhook_url

    if url is None or url == "":
        return ""
    if not isinstance(url, str):
        raise InvalidInput("url must be a string, or null for no account webhook.", param="url")
    try:
        return validate_webhook_url(url)
    except WebhookRefused as exc:
        raise InvalidInput(exc.message, param="url") from exc


def clean_events(events: object) -> list[str]:
    """A subset of ACCOUNT_WEBHOOK_EVENTS, in their canonical order; missing or null means
    all of them. Unknown or repeated events are refused, not dropped."""
    if events is None:
        return list(ACCOUNT_WEBHOOK_EVENTS)
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise InvalidInput("events must be a list of event names.", param="events")
    unknown = [e for e in events if e not in ACCOUNT_WEBHOOK_EVENTS]
    if unknown:
        raise InvalidInput(
            f"Unknown events: {', '.join(sorted(set(unknown)))[:200]}. "
            f"Choose from {', '.join(ACCOUNT_WEBHOOK_EVENTS)}.",
            param="events",
        )
    if len(set(events)) != len(events):
        raise InvalidInput("events lists an event more than once.", param="events")
    return [e for e in ACCOUNT_WEBHOOK_EVENTS if e in events]


def set_account_webhook(
    org: Organization, actor: AbstractBaseUser, url: object, events: object
) -> AccountWebhookConfig:
    """Replaces the org's account webhook: owners and admins (NotAllowed otherwise,
    NotFound for an outsider), as for the webhook secret. The input is checked first
    (InvalidInput, nothing changed), outside the transaction: the URL check resolves its
    host. Audited when it changes."""
    new_events = clean_events(events)
    new_url = clean_url(url)
    with transaction.atomic():
        require_role(org, actor, Role.ADMIN)
        _replace(org, actor, new_url, new_events)
    return AccountWebhookConfig(new_url or None, new_events)


def _replace(
    org: Organization, actor: AbstractBaseUser, new_url: str, new_events: list[str]
) -> None:
    # A new row holds the defaults, which read as "none" (get_or_create survives two
    # first writes at once); then the row is locked, so concurrent writes audit in order.
    AccountWebhook.objects.get_or_create(org=org)
    row = AccountWebhook.objects.select_for_update().get(org=org)
    old = (row.url, list(row.events))
    if old != (new_url, new_events):
        row.url, row.events = new_url, new_events
        row.save(update_fields=["url", "events", "updated_at"])
        audit(
            org,
            actor,
            "org.account_webhook_changed",
            org.slug,
            old={"url": old[0] or None, "events": old[1]},
            new={"url": new_url or None, "events": new_events},
        )
