"""Giving back what a settled call paid, as a reversing ledger entry (`UsageCorrection`):
a settled receipt (`CallCost`) is never rewritten.

The credits part goes back to the org's balance (a `CreditEntry` of kind "correction"),
the plan part back to the period's allowance; both lower what the period counts as spent,
so the spend caps get the room back. Overage already went to Stripe, which is the source
of truth for it: it is corrected there (a credit note on the invoice), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Sum

from billing import credits, royalties
from billing.models import CallCost, CreditEntry, UsageCorrection, UsagePeriod, UsageRecord
from billing.prices import decimal_string, parse_amount
from portal.errors import InvalidInput, NotFound
from portal.services import audit

ZERO = Decimal(0)
MAX_REASON = UsageCorrection._meta.get_field("reason").max_length


@dataclass(frozen=True)
class Refundable:
    plan: Decimal
    credits: Decimal

    @property
    def total(self) -> Decimal:
        return self.plan + self.credits


def _refundable(cost: CallCost) -> Refundable:
    """What the call paid from its plan and from credits, less what was given back."""
    given = cost.corrections.aggregate(plan=Sum("plan_amount"), credits=Sum("credits_amount"))
    return Refundable(
        plan=cost.paid_by_plan + (given["plan"] or ZERO),
        credits=cost.paid_by_credits + (given["credits"] or ZERO),
    )


def _clean_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Say why the call is corrected: the reason is kept in the ledger.")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"The reason takes at most {MAX_REASON} characters.")
    return reason


def _amount(value: object | None, refundable: Refundable) -> Decimal:
    if refundable.total <= 0:
        raise InvalidInput("Nothing this call paid from its plan or credits is left to give back.")
    amount = refundable.total if value is None else parse_amount(value, "amount")
    if amount <= 0:
        raise InvalidInput("The amount to give back must be above zero.", param="amount")
    if amount > refundable.total:
        raise InvalidInput(
            f"At most {decimal_string(refundable.total)} of this call can be given back.",
            param="amount",
        )
    return amount


@transaction.atomic
def give_back(
    prediction_id: str,
    reason: str,
    amount: object | None = None,
    actor: AbstractBaseUser | None = None,
) -> UsageCorrection:
    """Gives back `amount` (all that is left by default) of a settled call: credits first,
    then plan allowance. Corrections of one call are serialized by its period's lock, so
    together they never give back more than it paid."""
    reason = _clean_reason(reason)
    record = UsageRecord.objects.filter(prediction_id=prediction_id).first()
    cost = (
        CallCost.objects.select_related("org", "model").filter(prediction_id=prediction_id).first()
    )
    if record is None or cost is None:
        raise NotFound("No settled call with this prediction id.", code="call_not_found")
    # The lock settlement takes: the sums below stay true until this commits.
    UsagePeriod.objects.select_for_update().filter(pk=record.period_id).first()
    refundable = _refundable(cost)
    amount = _amount(amount, refundable)
    from_credits = min(amount, refundable.credits)
    from_plan = amount - from_credits
    correction = UsageCorrection.objects.create(
        call_cost=cost,
        org=cost.org,
        plan_amount=-from_plan,
        credits_amount=-from_credits,
        reason=reason,
        created_by=actor if actor is not None and actor.pk else None,
    )
    UsagePeriod.objects.filter(pk=record.period_id).update(
        allowance_used=F("allowance_used") - from_plan,
        credits_used=F("credits_used") - from_credits,
    )
    if from_credits:
        credits.change_balance(
            cost.org,
            from_credits,
            CreditEntry.Kind.CORRECTION,
            reference=f"correction:{correction.pk}",
            note=reason,
            actor=actor,
        )
    royalties.reverse_correction(correction, cost)
    audit(cost.org, actor, "billing.call_corrected", prediction_id, amount=str(amount))
    return correction
