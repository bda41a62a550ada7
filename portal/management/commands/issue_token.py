from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from portal import services
from portal.errors import PortalError
from portal.models import Organization


class Command(BaseCommand):
    help = "Issue an API token for an organization; prints the token alone on stdout."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", default="predict,read")
        parser.add_argument("--expires-days", type=int, default=None)

    def handle(self, *args, org: str, name: str, scopes: str, expires_days: int | None, **opts):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization with slug {org!r}.")
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days must be at least 1.")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            issued = services.issue_token(
                organization, None, name, scopes=scopes.split(","), expires_at=expires_at
            )
        except PortalError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(issued.plaintext)
