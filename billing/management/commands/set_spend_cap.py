from django.core.management.base import BaseCommand, CommandError

from billing import caps
from billing.prices import decimal_string
from portal.errors import PortalError
from portal.models import Organization


class Command(BaseCommand):
    help = (
        "Set an organization's spend cap per billing period, on what it pays beyond its "
        "plan (API.md, Operator CLI); --monthly none removes it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--monthly", required=True, metavar="D|none")

    def handle(self, *args, org: str, monthly: str, **options):
        found = Organization.objects.filter(slug=org).first()
        if found is None:
            raise CommandError(f"No organization with slug {org!r}.")
        try:
            cap = caps.set_spend_cap(found, monthly)
        except PortalError as exc:
            raise CommandError(exc.message) from exc
        shown = "none" if cap is None else decimal_string(cap)
        self.stdout.write(f"{found.slug}: spend cap {shown}")
