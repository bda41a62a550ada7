"""The operator commands of issue #12 (API.md, Operator CLI): grant_credits and
set_spend_cap, on a real database; bad input is a CommandError that changes nothing."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from billing.models import BillingAccount, CreditEntry
from portal.models import AuditLog

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_grant_credits_adds_a_ledger_entry(org):
    assert run("grant_credits", "--org", org.slug, "--amount", "25.50", "--note", "launch") == (
        f"{org.slug}: granted 25.5, balance 25.5\n"
    )
    run("grant_credits", "--org", org.slug, "--amount", "0.000001")
    entries = CreditEntry.objects.filter(org=org).order_by("pk")
    assert [(e.kind, e.amount, e.note) for e in entries] == [
        ("grant", Decimal("25.5"), "launch"),
        ("grant", Decimal("0.000001"), "manage.py grant_credits"),
    ]
    assert BillingAccount.objects.get(org=org).balance == Decimal("25.500001")
    assert AuditLog.objects.filter(org=org, action="billing.credits_granted").count() == 2


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "1.0000001", "NaN", "1e9", ""])
def test_grant_credits_refuses_bad_amounts(org, amount):
    with pytest.raises(CommandError):
        run("grant_credits", "--org", org.slug, "--amount", amount)
    assert not CreditEntry.objects.exists()


def test_commands_refuse_an_unknown_org():
    with pytest.raises(CommandError, match="No organization"):
        run("grant_credits", "--org", "nope", "--amount", "1")
    with pytest.raises(CommandError, match="No organization"):
        run("set_spend_cap", "--org", "nope", "--monthly", "1")


def test_set_spend_cap_sets_and_removes(org):
    assert run("set_spend_cap", "--org", org.slug, "--monthly", "100") == (
        f"{org.slug}: spend cap 100\n"
    )
    assert BillingAccount.objects.get(org=org).spend_cap == Decimal(100)
    assert run("set_spend_cap", "--org", org.slug, "--monthly", "none") == (
        f"{org.slug}: spend cap none\n"
    )
    assert BillingAccount.objects.get(org=org).spend_cap is None


@pytest.mark.parametrize("amount", ["-1", "abc", "1.0000001", "Infinity"])
def test_set_spend_cap_refuses_bad_amounts(org, amount):
    run("set_spend_cap", "--org", org.slug, "--monthly", "7")
    with pytest.raises(CommandError):
        run("set_spend_cap", "--org", org.slug, "--monthly", amount)
    assert BillingAccount.objects.get(org=org).spend_cap == Decimal(7)
