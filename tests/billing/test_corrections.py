"""Giving back what a settled call paid (issue #12: corrections are their own ledger
entries): credits back to the balance, plan allowance back to the period, the receipt
untouched; never more than the call paid, even when corrections race."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum

from billing import caps, corrections, credits
from billing.models import CallCost, CreditEntry, UsageCorrection, UsagePeriod
from inference.lifecycle import finish
from inference.models import Status
from portal.errors import InvalidInput, NotFound, PaymentRequired
from portal.models import AuditLog
from tests.billing.test_quota import _hammer, money, run

pytestmark = pytest.mark.usefixtures("worker_present")


@pytest.fixture
def org(owner):
    return owner.memberships.get(org__is_personal=True).org


@pytest.fixture
def settled(owner, org, free_plan, priced):
    """A call that paid 0.010 from the plan and 0.005 from credits."""
    free_plan.allowance = Decimal("0.010")
    free_plan.save()
    credits.grant_credits(org, "1")
    prediction = run(org, owner)
    finish(prediction, Status.SUCCEEDED, input_tokens=4, output_tokens=5)  # 0.015
    return prediction


def _period(org) -> UsagePeriod:
    return UsagePeriod.objects.get(org=org)


@pytest.mark.django_db
def test_giving_back_part_takes_credits_first_and_leaves_the_receipt(org, settled):
    receipt = CallCost.objects.get(prediction=settled)
    correction = corrections.give_back(settled.id, "garbled output", "0.007")
    assert (correction.credits_amount, correction.plan_amount) == money("-0.005", "-0.002")
    assert CallCost.objects.get(pk=receipt.pk).amount == receipt.amount  # never rewritten
    assert credits.account_for(org).balance == Decimal(1)  # 0.995 + 0.005
    entry = CreditEntry.objects.get(kind="correction")
    assert (entry.amount, entry.reference) == (Decimal("0.005"), f"correction:{correction.pk}")
    period = _period(org)
    assert (period.allowance_used, period.credits_used) == money("0.008", "0")
    assert AuditLog.objects.filter(org=org, action="billing.call_corrected").exists()

    rest = corrections.give_back(settled.id, "and the rest")
    assert (rest.credits_amount, rest.plan_amount) == money("0", "-0.008")
    with pytest.raises(InvalidInput, match="Nothing"):
        corrections.give_back(settled.id, "again")
    assert _period(org).allowance_used == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("amount", "reason", "message"),
    [
        ("0.016", "too much", "At most 0.015"),
        ("0", "zero", "above zero"),
        ("-1", "negative", "zero or more"),
        ("abc", "text", "not a decimal"),
        (0.01, "a float", "decimal string"),
        ("0.01", "", "Say why"),
        ("0.01", "x" * 301, "at most 300"),
    ],
)
def test_bad_corrections_are_refused_and_change_nothing(settled, amount, reason, message):
    with pytest.raises(InvalidInput, match=message):
        corrections.give_back(settled.id, reason, amount)
    assert not UsageCorrection.objects.exists()
    assert not CreditEntry.objects.filter(kind="correction").exists()


@pytest.mark.django_db
def test_an_unsettled_or_unknown_call_is_not_found(owner, org, free_plan, priced):
    in_flight = run(org, owner)
    for prediction_id in (in_flight.id, "nope"):
        with pytest.raises(NotFound):
            corrections.give_back(prediction_id, "why")


@pytest.mark.django_db
def test_a_correction_gives_the_spend_cap_its_room_back(owner, org, settled):
    caps.set_spend_cap(org, "0.025")  # a worst case; the settled call used 0.005 of it
    with pytest.raises(PaymentRequired):
        run(org, owner)
    corrections.give_back(settled.id, "refund", "0.005")
    assert _period(org).spent == 0
    assert run(org, owner).status == Status.STARTING


@pytest.mark.django_db(transaction=True)
def test_20_corrections_at_once_never_give_back_more_than_the_call_paid(org, settled):
    def attempt(i: int) -> UsageCorrection | str:
        try:
            return corrections.give_back(settled.id, f"race {i}", "0.001")
        except InvalidInput as exc:
            return exc.message

    results = _hammer(20, attempt)
    assert sum(isinstance(result, UsageCorrection) for result in results) == 15
    given = UsageCorrection.objects.aggregate(
        plan=Sum("plan_amount"), credits=Sum("credits_amount")
    )
    assert (given["plan"], given["credits"]) == money("-0.010", "-0.005")
    ledger = CreditEntry.objects.filter(org=org).aggregate(total=Sum("amount"))["total"]
    assert ledger == credits.account_for(org).balance == Decimal(1)


@pytest.mark.django_db
def test_the_refund_call_command(settled):
    out = StringIO()
    call_command("refund_call", "--prediction", settled.id, "--reason", "bad", stdout=out)
    assert out.getvalue() == (
        f"{settled.id}: gave back 0.015 (0.005 to credits, 0.01 to the plan allowance)\n"
    )
    with pytest.raises(CommandError, match="Nothing"):
        call_command("refund_call", "--prediction", settled.id, "--reason", "bad")


@pytest.mark.django_db
def test_an_operator_gives_back_from_admin_and_sees_refusals_on_the_form(client, org, settled):
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345678")
    client.force_login(root)
    url = "/admin/billing/usagecorrection/add/"
    assert client.get(url).status_code == 200
    refused = client.post(url, {"prediction": settled.id, "amount": "1", "reason": "x"})
    assert refused.status_code == 200 and b"At most 0.015" in refused.content
    assert not UsageCorrection.objects.exists()

    done = client.post(url, {"prediction": settled.id, "amount": "", "reason": "bad output"})
    assert done.status_code == 302
    correction = UsageCorrection.objects.get()
    assert (correction.credits_amount, correction.created_by) == (Decimal("-0.005"), root)
    assert client.get(f"/admin/billing/usagecorrection/{correction.pk}/change/").status_code == 200
