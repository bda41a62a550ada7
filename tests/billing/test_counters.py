"""The reservation's raw writes (billing/counters.py): a hold that fails after the period
lock leaves nothing behind, and SQLite (the embedded default) reserves like PostgreSQL."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connections

from billing import counters, credits
from billing.models import CreditEntry, UsagePeriod, UsageRecord
from inference.admission import PredictionRequest, admit
from inference.models import Prediction
from portal.auth import ALL_SCOPES, Principal
from portal.errors import PaymentRequired
from tests.sqlite_scenario import seen_on_sqlite

pytestmark = pytest.mark.usefixtures("worker_present")


def take_back_credits_while_locked(org, monkeypatch) -> None:
    """A refund lands between the period lock and the hold: it takes no period lock, so
    it commits from another connection while the admission holds it."""
    lock = counters.lock_period

    def refund(org_id, start):
        locked = lock(org_id, start)

        def take_back():
            try:
                credits.change_balance(
                    org, Decimal("-0.02"), CreditEntry.Kind.REFUND, reference="refund:re_race"
                )
            finally:
                connections.close_all()

        thread = threading.Thread(target=take_back)
        thread.start()
        thread.join()
        return locked

    monkeypatch.setattr(counters, "lock_period", refund)


@pytest.mark.django_db(transaction=True)
def test_credits_taken_back_after_the_lock_refuse_the_call_and_change_nothing(
    owner, free_plan, priced, monkeypatch
):
    org = owner.memberships.get(org__is_personal=True).org
    free_plan.allowance = Decimal(0)
    free_plan.save()
    credits.grant_credits(org, "0.03")  # covers the worst case, 0.025, until the refund
    take_back_credits_while_locked(org, monkeypatch)
    principal = Principal(org=org, user=owner, token=None, scopes=ALL_SCOPES)
    request = PredictionRequest("echo", {"prompt": "hello there", "max_new_tokens": 10})
    with pytest.raises(PaymentRequired) as caught:
        admit(principal, request)
    assert caught.value.code == "insufficient_credits"
    account = credits.account_for(org)
    assert (account.balance, account.credits_reserved) == (Decimal("0.01"), Decimal(0))
    assert not Prediction.objects.filter(org=org).exists()
    assert not UsageRecord.objects.filter(org=org).exists()
    assert not UsagePeriod.objects.filter(org=org, paid_reserved__gt=0).exists()


def test_sqlite_reserves_and_refuses_like_postgresql(tmp_path):
    seen = seen_on_sqlite("tests.billing.sqlite_money", tmp_path)
    assert seen == {
        "entry_for": True,
        "reserved_credits": "0.025000",
        "account_reserved": "0.025000",
        "period_paid_reserved": "0.025000",
        "refused": "insufficient_credits",
    }
