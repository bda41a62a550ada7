"""E-mail to an organization's owners: billing alerts, deprecation notices and price
changes all go to the people who answer for the org's money and integrations."""

from __future__ import annotations

from django.core.mail import EmailMessage, get_connection

from portal.models import Membership, Role


def owner_emails(org_id: int) -> list[str]:
    owners = Membership.objects.filter(org_id=org_id, role=Role.OWNER, user__is_active=True)
    emails = owners.exclude(user__email="").values_list("user__email", flat=True)
    return sorted(set(emails))


def email_owners(org_id: int, subject: str, body: str) -> int:
    """One message per owner (owners do not see each other's addresses); how many went."""
    messages = [EmailMessage(subject, body, to=[email]) for email in owner_emails(org_id)]
    if not messages:
        return 0
    with get_connection() as connection:
        return connection.send_messages(messages) or 0
