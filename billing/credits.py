"""Prepaid credits: the org's balance and its append-only ledger (`CreditEntry`).

Every change of a balance is one conditional UPDATE of `BillingAccount` and one ledger
entry, in one transaction; an entry with a `reference` (a Stripe payment, a refund, a
call) exists at most once, so a replayed event changes nothing.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F

from billing.models import BillingAccount, CreditEntry
from billing.prices import parse_amount
from portal.errors import InvalidInput
from portal.models import Organization
from portal.services import audit


def account_for(org: Organization) -> BillingAccount:
    """The org's billing account, created on first use (concurrent first uses share it)."""
    account = BillingAccount.objects.filter(org=org).first()
    if account is not None:
        return account
    BillingAccount.objects.bulk_create([BillingAccount(org=org)], ignore_conflicts=True)
    return BillingAccount.objects.get(org=org)


def _record(
    account: BillingAccount,
    amount: Decimal,
    kind: str,
    *,
    reference: str | None,
    note: str = "",
    actor: AbstractBaseUser | None = None,
) -> CreditEntry:
    BillingAccount.objects.filter(pk=account.pk).update(balance=F("balance") + amount)
    balance = BillingAccount.objects.values_list("balance", flat=True).get(pk=account.pk)
    return CreditEntry.objects.create(
        org_id=account.org_id,
        kind=kind,
        amount=amount,
        balance_after=balance,
        reference=reference,
        note=note[:300],
        created_by=actor if actor is not None and actor.pk else None,
    )


def change_balance(
    org: Organization,
    amount: Decimal,
    kind: str,
    *,
    reference: str | None = None,
    note: str = "",
    actor: AbstractBaseUser | None = None,
) -> CreditEntry | None:
    """Adds `amount` (negative takes credits back) with its ledger entry. Returns None,
    changing nothing, when an entry with `reference` already exists (a replay)."""
    account = account_for(org)
    try:
        # A savepoint: a replay's unique violation rolls back this change only, never
        # the caller's transaction (a webhook's event row, say).
        with transaction.atomic():
            if reference and CreditEntry.objects.filter(reference=reference).exists():
                return None
            return _record(account, amount, kind, reference=reference, note=note, actor=actor)
    except IntegrityError:
        if reference and CreditEntry.objects.filter(reference=reference).exists():
            return None
        raise


def grant_credits(
    org: Organization,
    amount: object,
    *,
    actor: AbstractBaseUser | None = None,
    note: str = "",
    reference: str | None = None,
) -> CreditEntry | None:
    """An operator's grant (admin, `manage.py grant_credits`): a positive decimal amount."""
    value = parse_amount(amount, "amount")
    if value <= 0:
        raise InvalidInput("amount must be more than zero.", param="amount")
    entry = change_balance(
        org, value, CreditEntry.Kind.GRANT, reference=reference, note=note, actor=actor
    )
    if entry is not None:
        audit(org, actor, "billing.credits_granted", str(value))
    return entry


def balance_of(org: Organization) -> Decimal:
    account = BillingAccount.objects.filter(org=org).first()
    return account.balance if account else Decimal(0)
