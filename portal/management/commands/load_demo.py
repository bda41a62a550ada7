from django.core.management.base import BaseCommand
from django.db import transaction

from billing.demo import load_demo_plans, load_demo_prices
from models_hub.demo import load_demo_catalog


class Command(BaseCommand):
    help = "Load (or refresh) the demo catalog, plans and prices; safe to run repeatedly."

    @transaction.atomic
    def handle(self, *args, **options):
        listings = load_demo_catalog()
        self.stdout.write(f"Demo catalog: {len(listings)} models.")
        plans = load_demo_plans()
        self.stdout.write(f"Demo plans: {', '.join(plan.name for plan in plans)}.")
        priced = [price.listing.slug for price in load_demo_prices() if not price.is_free]
        self.stdout.write(f"Demo prices: {', '.join(priced)}.")
