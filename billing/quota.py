"""Entitlement and quota hooks of the prediction pipeline.

Admission calls `check_entitlement` before validating the input, counts `rate_limits`
with the caller's own, and calls `reserve` inside the transaction that creates the
prediction; `finish` calls `settle` inside the transaction that makes it terminal. The
work happens in `billing.entitlement` and `billing.metering`; this module is the
pipeline's fixed interface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from billing import entitlement, metering
from portal import ratelimit

if TYPE_CHECKING:
    from decimal import Decimal

    from billing.plans import PlanState
    from inference.models import Prediction
    from models_hub.models import ModelListing
    from portal.models import Organization


def check_entitlement(org: Organization, listing: ModelListing) -> PlanState:
    """The plan in force; raises PaymentRequired when it does not include the model.
    Admission passes what it returns to the other hooks: the plan checked is the plan
    the call is limited and reserved under, even if a webhook changes it meanwhile."""
    return entitlement.check_entitlement(org, listing)


def rate_limits(org: Organization, state: PlanState) -> list[ratelimit.Limit]:
    """The plan's per-minute limit, for admission to count with the caller's own."""
    limit = entitlement.plan_rate_limit(org, state)
    return [] if limit is None else [limit]


def reserve(
    prediction: Prediction,
    listing: ModelListing,
    state: PlanState,
    max_cost: Decimal | None = None,
) -> None:
    """Reserves the prediction's worst-case cost against every limit that applies (402 if
    one would be crossed, `max_cost` included)."""
    metering.reserve(prediction, listing, state, max_cost)


def settle(prediction: Prediction) -> None:
    """Turns the reservation into the delivered cost and releases the rest."""
    metering.settle(prediction)
