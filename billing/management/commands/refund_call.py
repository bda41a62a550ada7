from django.core.management.base import BaseCommand, CommandError

from billing import corrections
from billing.prices import decimal_string
from portal.errors import PortalError


class Command(BaseCommand):
    help = (
        "Give back what a settled call paid from its plan and credits, as a correction "
        "entry (README, Operator CLI). Overage is corrected in Stripe."
    )

    def add_arguments(self, parser):
        parser.add_argument("--prediction", required=True, help="the call's prediction id")
        parser.add_argument("--reason", required=True, help="why (kept in the ledger)")
        parser.add_argument(
            "--amount", metavar="D", help="decimal above 0; all that is left by default"
        )

    def handle(self, *args, prediction: str, reason: str, amount: str | None, **options):
        try:
            correction = corrections.give_back(prediction, reason, amount)
        except PortalError as exc:
            raise CommandError(exc.message) from exc
        given = -(correction.plan_amount + correction.credits_amount)
        self.stdout.write(
            f"{prediction}: gave back {decimal_string(given)} "
            f"({decimal_string(-correction.credits_amount)} to credits, "
            f"{decimal_string(-correction.plan_amount)} to the plan allowance)"
        )
