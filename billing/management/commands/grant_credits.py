from django.core.management.base import BaseCommand, CommandError

from billing import credits
from billing.prices import decimal_string
from portal.errors import PortalError
from portal.models import Organization


class Command(BaseCommand):
    help = "Grant prepaid credits to an organization (API.md, Operator CLI)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--amount", required=True, metavar="D", help="decimal, above 0")
        parser.add_argument("--note", default="", help="why (kept in the credit ledger)")

    def handle(self, *args, org: str, amount: str, note: str, **options):
        found = Organization.objects.filter(slug=org).first()
        if found is None:
            raise CommandError(f"No organization with slug {org!r}.")
        try:
            entry = credits.grant_credits(found, amount, note=note or "manage.py grant_credits")
        except PortalError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"{found.slug}: granted {decimal_string(entry.amount)}, "
            f"balance {decimal_string(entry.balance_after)}"
        )
