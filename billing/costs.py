"""The cost of every call (its receipt): priced when the prediction settles, with the
price in force when it was created, and written once (`CallCost`)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.core.exceptions import ObjectDoesNotExist

from billing.models import MONEY_PLACES, CallCost, ListingPrice
from billing.prices import decimal_string
from inference.models import Prediction
from portal.sql import insert

PER_MILLION = Decimal(1_000_000)
AMOUNT_STEP = Decimal(1).scaleb(-MONEY_PLACES)
SECONDS_STEP = Decimal("0.001")
ZERO = Decimal(0)


@dataclass(frozen=True)
class Billed:
    """What a call is charged for (README, "What a call counts")."""

    input_tokens: int
    output_tokens: int
    seconds: Decimal
    requests: int


def amount_for(price: ListingPrice, billed: Billed) -> Decimal:
    """The call's amount: each quantity times its unit price, summed exactly and rounded
    once, half up, to 6 decimal places."""
    exact = (
        billed.input_tokens * price.input_per_million / PER_MILLION
        + billed.output_tokens * price.output_per_million / PER_MILLION
        + billed.requests * price.per_request
        + billed.seconds * price.per_second
    )
    return exact.quantize(AMOUNT_STEP, rounding=ROUND_HALF_UP)


def billed_seconds(prediction: Prediction) -> Decimal:
    """Run time to the millisecond; the float is a measurement, converted once here."""
    if not prediction.predict_time:
        return Decimal(0)
    return Decimal(repr(prediction.predict_time)).quantize(SECONDS_STEP, rounding=ROUND_HALF_UP)


def record_cost(
    prediction: Prediction,
    price: ListingPrice,
    billed: Billed,
    amount: Decimal,
    paid: Any,
    by_subscription: bool = False,
) -> CallCost:
    """Writes the call's receipt, the usage ledger's settlement entry; called once, by
    settlement, in its transaction. `paid` splits `amount` by source (all zero when
    billing is off and nobody pays); its allowance is a listing subscription's when
    `by_subscription`, else the site plan's."""
    receipt = CallCost(
        prediction=prediction,
        org_id=prediction.org_id,
        model_id=prediction.model_id,
        price=price if price.pk else None,
        currency=price.currency,
        input_per_million=price.input_per_million,
        output_per_million=price.output_per_million,
        per_request=price.per_request,
        per_second=price.per_second,
        input_tokens=billed.input_tokens,
        output_tokens=billed.output_tokens,
        generated_output_tokens=prediction.output_tokens,
        seconds=billed.seconds,
        requests=billed.requests,
        amount=amount,
        paid_by_plan=ZERO if by_subscription else paid.allowance,
        paid_by_subscription=paid.allowance if by_subscription else ZERO,
        paid_by_credits=paid.credits,
        paid_as_overage=paid.overage,
    )
    # One statement, as the ledger's other entries are written: settlement runs on every
    # call, inside the period lock.
    return insert(receipt)


def cost_of(prediction: Prediction) -> CallCost | None:
    """The receipt of a terminal prediction; None before it settles (or for calls settled
    before receipts existed)."""
    if not prediction.is_terminal:
        return None
    try:
        return prediction.call_cost
    except ObjectDoesNotExist:
        return None


def cost_payload(cost: CallCost | None) -> dict[str, Any] | None:
    """API.md's prediction `cost` object."""
    if cost is None:
        return None
    paid = (
        ("plan", cost.paid_by_plan),
        ("subscription", cost.paid_by_subscription),
        ("credits", cost.paid_by_credits),
        ("overage", cost.paid_as_overage),
    )
    return {
        "amount": decimal_string(cost.amount),
        "currency": cost.currency,
        "billed": {
            "input_tokens": cost.input_tokens,
            "output_tokens": cost.output_tokens,
            "seconds": decimal_string(cost.seconds),
            "requests": cost.requests,
        },
        "generated_output_tokens": cost.generated_output_tokens,
        "paid_from": [
            {"source": source, "amount": decimal_string(amount)}
            for source, amount in paid
            if amount
        ],
    }


def cost_number(cost: CallCost | None) -> float | None:
    """`/v1` `usage.cost`: a JSON number, as OpenRouter sends it. The float is made only
    here, from the 6-decimal Decimal, whose shortest repr it keeps exactly."""
    return None if cost is None else float(cost.amount)
