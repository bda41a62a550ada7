from allauth.account.adapter import DefaultAccountAdapter
from django.db import transaction
from django.http import HttpRequest

from portal import ratelimit, services


class AccountAdapter(DefaultAccountAdapter):
    """Every new account gets its personal organization in the same transaction, and
    log-in throttling sees the client address our own limits see."""

    @transaction.atomic
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            services.create_personal_org(user)
        return user

    def get_client_ip(self, request: HttpRequest) -> str:
        """The address log-in throttling keys on: the same as our per-IP limit's, so one
        setting (TRUSTED_PROXY_COUNT) decides whether X-Forwarded-For is believed at all."""
        return ratelimit.client_ip(request)
