"""Monthly payouts (issue #13): one Connect transfer per publisher and month, of what it
earned before the month ended, once past the hold; never twice, whatever runs at once or
is retried; below the minimum or negative, the balance carries forward."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connections

from billing import payouts
from billing.models import Payout, PublisherAccount, RoyaltyEntry
from portal import services as portal_services

pytestmark = pytest.mark.django_db

# Past the 7-day hold of October's entries, not yet of November's.
NOVEMBER_9 = datetime(2026, 11, 9, 1, tzinfo=UTC)
OCTOBER = datetime(2026, 10, 15, tzinfo=UTC)
TRANSFERS = "/v1/transfers"


@pytest.fixture
def publisher(outsider):
    org = portal_services.create_org("Model Makers", outsider)
    PublisherAccount.objects.create(
        org=org, stripe_account_id="acct_pub", details_submitted=True, payouts_enabled=True
    )
    return org


_references = itertools.count(1)


def earn(publisher, share: str, when: datetime) -> RoyaltyEntry:
    """An entry of `share` for the publisher, created at `when`."""
    reference = f"t:{next(_references)}"
    share_d = Decimal(share)
    entry = RoyaltyEntry.objects.create(
        publisher=publisher, kind="usage" if share_d > 0 else "refund", reference=reference,
        customer_charge=share_d, publisher_share=share_d, platform_fee=0, fee_percent=0,
    )  # fmt: skip
    RoyaltyEntry.objects.filter(pk=entry.pk).update(created_at=when)
    return entry


def transfer_ok(fake_stripe, transfer_id: str = "tr_1") -> None:
    fake_stripe.respond("POST", TRANSFERS, 200, {"id": transfer_id, "object": "transfer"})


def test_last_months_balance_is_sent_once_with_an_idempotency_key(fake_stripe, publisher):
    earn(publisher, "30.123456", OCTOBER)
    earn(publisher, "5", datetime(2026, 11, 2, tzinfo=UTC))  # November's: next month
    transfer_ok(fake_stripe)
    [payout] = payouts.pay_publishers(NOVEMBER_9)
    assert (payout.status, payout.amount, payout.stripe_transfer_id) == (
        "paid",
        Decimal("30.12"),
        "tr_1",
    )
    [call] = fake_stripe.calls(TRANSFERS)
    assert call.form == {
        "amount": ["3012"], "currency": ["usd"], "destination": ["acct_pub"],
        "metadata[publisher]": [str(publisher.pk)], "metadata[period]": ["2026-10"],
    }  # fmt: skip
    assert call.headers["Idempotency-Key"] == f"payout-{publisher.pk}-2026-10"

    assert payouts.pay_publishers(NOVEMBER_9) == []  # a second run: October is paid
    assert len(fake_stripe.calls(TRANSFERS)) == 1
    # The fraction of a cent stays in the balance, with November's earnings.
    assert payouts.balance(publisher.pk, datetime(2026, 12, 1, tzinfo=UTC)) == Decimal("5.003456")


def test_nothing_is_paid_before_the_hold_is_over(fake_stripe, publisher):
    earn(publisher, "100", OCTOBER)
    assert payouts.pay_publishers(datetime(2026, 11, 7, 23, tzinfo=UTC)) == []
    assert not Payout.objects.exists() and not fake_stripe.requests


def test_below_the_minimum_or_negative_the_balance_carries_forward(fake_stripe, publisher):
    earn(publisher, "20", OCTOBER)
    assert payouts.pay_publishers(NOVEMBER_9) == []  # below $25
    earn(publisher, "10", datetime(2026, 11, 20, tzinfo=UTC))
    transfer_ok(fake_stripe)
    [payout] = payouts.pay_publishers(datetime(2026, 12, 8, 1, tzinfo=UTC))
    assert payout.amount == Decimal(30)

    earn(publisher, "-40", datetime(2026, 12, 3, tzinfo=UTC))  # a refund after the payout
    earn(publisher, "70", datetime(2027, 1, 3, tzinfo=UTC))
    assert payouts.pay_publishers(datetime(2027, 1, 8, 1, tzinfo=UTC)) == []  # -40
    [february] = payouts.pay_publishers(datetime(2027, 2, 8, 1, tzinfo=UTC))
    assert february.amount == Decimal(30)  # -40 carried forward against 70


def test_a_failed_transfer_is_kept_and_retried_with_the_same_key(fake_stripe, publisher):
    earn(publisher, "40", OCTOBER)
    fake_stripe.respond("POST", TRANSFERS, 500, {"error": {"message": "boom"}})
    transfer_ok(fake_stripe, "tr_2")
    [failed] = payouts.pay_publishers(NOVEMBER_9)
    assert failed.status == "failed" and failed.error and failed.attempts == 1
    [paid] = payouts.pay_publishers(NOVEMBER_9)
    assert (paid.pk, paid.status, paid.attempts, paid.stripe_transfer_id) == (
        failed.pk, "paid", 2, "tr_2"
    )  # fmt: skip
    keys = {call.headers["Idempotency-Key"] for call in fake_stripe.calls(TRANSFERS)}
    assert keys == {f"payout-{publisher.pk}-2026-10"}


def test_a_publisher_stripe_cannot_pay_out_is_not_paid(fake_stripe, publisher):
    PublisherAccount.objects.filter(org=publisher).update(payouts_enabled=False)
    earn(publisher, "100", OCTOBER)
    assert payouts.pay_publishers(NOVEMBER_9) == []


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_pay_each_publisher_once(fake_stripe, publisher, owner):
    other = portal_services.create_org("Other Makers", owner)
    PublisherAccount.objects.create(
        org=other, stripe_account_id="acct_other", details_submitted=True, payouts_enabled=True
    )
    earn(publisher, "100", OCTOBER)
    earn(other, "60", OCTOBER)
    transfer_ok(fake_stripe)
    barrier = threading.Barrier(4)

    def run() -> None:
        try:
            barrier.wait()
            payouts.pay_publishers(NOVEMBER_9)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(Payout.objects.values_list("amount", "status")) == [
        (Decimal(60), "paid"), (Decimal(100), "paid")
    ]  # fmt: skip
    destinations = sorted(c.form["destination"][0] for c in fake_stripe.calls(TRANSFERS))
    assert destinations == ["acct_other", "acct_pub"]
