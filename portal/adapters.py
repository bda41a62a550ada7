from allauth.account.adapter import DefaultAccountAdapter
from django.db import transaction

from portal import services


class AccountAdapter(DefaultAccountAdapter):
    """Every new account gets its personal organization in the same transaction."""

    @transaction.atomic
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            services.create_personal_org(user)
        return user
