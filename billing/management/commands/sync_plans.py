from django.core.management.base import BaseCommand, CommandError

from billing import stripe_client
from billing.plan_sync import sync_plans


class Command(BaseCommand):
    help = "Create or update each paid plan's Stripe Product and Prices (and the usage meter)."

    def handle(self, *args, **options):
        if not stripe_client.is_configured():
            raise CommandError("STRIPE_SECRET_KEY is not set; nothing to sync.")
        for line in sync_plans():
            self.stdout.write(line)
