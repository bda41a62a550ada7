import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from portal import services
from portal.errors import PortalError


class Command(BaseCommand):
    help = "Create an organization (and its owner's account if new); prints the org slug."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--owner-email", required=True)

    @transaction.atomic
    def handle(self, *args, name: str, owner_email: str, **options):
        User = get_user_model()
        email = User.objects.normalize_email(owner_email).lower()
        owner = User.objects.filter(email__iexact=email).first()
        if owner is None:
            # The owner sets a password through "forgot password"; none is known to anyone.
            owner = User.objects.create_user(
                username=email, email=email, password=secrets.token_urlsafe(32)
            )
            services.create_personal_org(owner)
        try:
            org = services.create_org(name, owner)
        except PortalError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(org.slug)
