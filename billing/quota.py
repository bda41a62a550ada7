"""Entitlement and quota hooks of the prediction pipeline.

Admission calls `check_entitlement` and `reserve` inside the transaction that creates the
prediction; `finish` calls `settle` inside the transaction that makes it terminal. Until
plans exist every published model is callable and nothing is metered; the billing issue
replaces these bodies with plan checks and atomic reservations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference.models import Prediction
    from models_hub.models import ModelListing
    from portal.models import Organization


def check_entitlement(org: Organization, listing: ModelListing) -> None:
    """Raises PaymentRequired when the org's plan does not include the model."""


def reserve(prediction: Prediction, listing: ModelListing) -> None:
    """Reserves the prediction's worst-case usage against the org's quota."""


def settle(prediction: Prediction) -> None:
    """Turns the reservation into actual usage and releases the rest."""
