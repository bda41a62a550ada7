from django.apps import AppConfig
from django.conf import settings


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        import stripe

        from billing import hot

        hot.connect()

        if settings.STRIPE_API_BASE:
            stripe.api_base = settings.STRIPE_API_BASE
