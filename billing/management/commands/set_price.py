from django.core.management.base import BaseCommand, CommandError

from billing import prices
from models_hub.models import ModelListing
from portal.errors import PortalError


class Command(BaseCommand):
    help = (
        "Set a model's price from now on (API.md, Operator CLI); parts left out keep their "
        "current value. Amounts are decimals in the portal's currency; 0 is free."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", required=True, help="listing slug")
        for part in prices.PARTS:
            parser.add_argument(f"--{part.replace('_', '-')}", dest=part, metavar="D")

    def handle(self, *args, model: str, **options):
        listing = ModelListing.objects.filter(slug=model).first()
        if listing is None:
            raise CommandError(f"No model with slug {model!r}.")
        parts = {part: options[part] for part in prices.PARTS if options[part] is not None}
        if not parts:
            raise CommandError("Give at least one price part, e.g. --input-per-million 0.5.")
        try:
            price = prices.set_price(listing, **parts)
        except PortalError as exc:
            raise CommandError(exc.message) from exc
        shown = ", ".join(
            f"{part} {prices.decimal_string(getattr(price, part))}" for part in prices.PARTS
        )
        since = f"{price.effective_from:%Y-%m-%d %H:%M:%S} UTC"
        self.stdout.write(f"{listing.slug}: {shown} {price.currency} from {since}")
