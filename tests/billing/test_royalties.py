"""The royalty ledger (issue #13): every settled call on a publisher's listing adds what
the customer paid, the publisher's share and the platform's fee, append-only; corrections
reverse at the call's own fee; site plans never cover a publisher's listing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models import Sum

from billing import corrections, credits, royalties
from billing.models import CallCost, PublisherAccount, RoyaltyEntry
from inference.lifecycle import finish
from inference.models import Prediction, Status
from portal import services as portal_services
from portal.errors import PaymentRequired
from tests.billing.test_quota import _admit_one, _hammer, _settle_all, money, run

pytestmark = pytest.mark.usefixtures("worker_present")


@pytest.fixture
def org(owner):
    return owner.memberships.get(org__is_personal=True).org


@pytest.fixture
def publisher(outsider):
    return portal_services.create_org("Model Makers", outsider)


@pytest.fixture
def published(echo, publisher, priced):
    """Echo, listed by a publisher: worst case 0.025 per call, as priced."""
    echo.org = publisher
    echo.save()
    return echo


def _paid_call(org, owner) -> Prediction:
    prediction = run(org, owner)
    finish(prediction, Status.SUCCEEDED, input_tokens=4, output_tokens=5)  # 0.015
    return prediction


@pytest.mark.django_db
def test_a_site_plan_never_covers_a_publishers_listing(owner, org, free_plan, published):
    free_plan.tasks = ["text-generation"]
    free_plan.save()
    with pytest.raises(PaymentRequired) as refused:
        run(org, owner)
    assert refused.value.code == "model_not_in_plan"
    credits.grant_credits(org, "1")
    prediction = _paid_call(org, owner)
    receipt = CallCost.objects.get(prediction=prediction)
    assert (receipt.paid_by_plan, receipt.paid_by_credits) == money("0", "0.015")


@pytest.mark.django_db
def test_a_settled_call_adds_one_entry_whose_parts_add_up(owner, org, free_plan, published):
    credits.grant_credits(org, "1")
    prediction = _paid_call(org, owner)
    finish(prediction, Status.SUCCEEDED, input_tokens=4, output_tokens=5)  # a retried finish
    entry = RoyaltyEntry.objects.get()
    assert (entry.kind, entry.reference) == ("usage", f"usage:{prediction.id}")
    assert (entry.publisher_id, entry.customer_id, entry.listing_id) == (
        published.org_id, org.pk, published.pk
    )  # fmt: skip
    assert (entry.customer_charge, entry.publisher_share, entry.platform_fee) == money(
        "0.015", "0.012", "0.003"
    )
    assert entry.fee_percent == Decimal(20)


@pytest.mark.django_db
def test_a_first_party_call_adds_no_entry(owner, org, free_plan, priced):
    credits.grant_credits(org, "1")
    free_plan.allowance = Decimal(0)
    free_plan.save()
    _paid_call(org, owner)
    assert CallCost.objects.get().paid_by_credits == Decimal("0.015")
    assert not RoyaltyEntry.objects.exists()


@pytest.mark.django_db
def test_an_operator_set_fee_applies_and_a_correction_reverses_at_the_calls_fee(
    owner, org, free_plan, published
):
    PublisherAccount.objects.create(
        org=published.org, stripe_account_id="acct_1", fee_percent=Decimal("12.5")
    )
    credits.grant_credits(org, "1")
    prediction = _paid_call(org, owner)
    usage = RoyaltyEntry.objects.get()
    assert (usage.publisher_share, usage.platform_fee) == money("0.013125", "0.001875")

    PublisherAccount.objects.filter(org=published.org).update(fee_percent=Decimal(30))
    corrections.give_back(prediction.id, "bad output", "0.01")
    refund = RoyaltyEntry.objects.get(kind="refund")
    assert (refund.customer_charge, refund.publisher_share, refund.platform_fee) == money(
        "-0.01", "-0.00875", "-0.00125"
    )
    assert refund.fee_percent == Decimal("12.5")


@pytest.mark.parametrize(
    ("charge", "percent", "share", "fee"),
    [
        ("0.000001", "20", "0.000001", "0"),
        ("0.000003", "50", "0.000001", "0.000002"),  # half up
        ("-0.000003", "50", "-0.000001", "-0.000002"),
        ("123.456789", "0", "123.456789", "0"),
        ("10", "100", "0", "10"),
    ],
)
def test_the_split_always_adds_up(charge, percent, share, fee):
    assert royalties.split(Decimal(charge), Decimal(percent)) == money(share, fee)


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_calls_settle_to_a_ledger_that_matches_usage_to_the_cent(
    owner, org, free_plan, published
):
    credits.grant_credits(org, "100")
    results = _hammer(200, _admit_one(org, owner))
    admitted = [r for r in results if isinstance(r, Prediction)]
    assert len(admitted) == 200
    _settle_all(admitted)
    paid = CallCost.objects.filter(org=org).aggregate(
        total=Sum("paid_by_credits") + Sum("paid_as_overage")
    )["total"]
    ledger = RoyaltyEntry.objects.aggregate(
        charge=Sum("customer_charge"), share=Sum("publisher_share"), fee=Sum("platform_fee")
    )
    assert RoyaltyEntry.objects.count() == 200
    assert ledger["charge"] == paid == ledger["share"] + ledger["fee"] == Decimal("5")
    assert ledger["fee"] == Decimal("1")
