import secrets

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from portal import services


class Command(BaseCommand):
    help = "Create the operator account once; prints its password only when it is created."

    def add_arguments(self, parser):
        parser.add_argument("--email", default="admin@localhost")

    @transaction.atomic
    def handle(self, *args, email: str, **options):
        User = get_user_model()
        if User.objects.filter(email__iexact=email).exists():
            self.stdout.write(f"Admin account {email} already exists (password unchanged).")
            return
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=email, email=email, password=password)
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        services.create_personal_org(user)
        self.stdout.write(f"Admin account: {email}  password: {password}  (shown once)")
