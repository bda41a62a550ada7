"""Data retention: each org decides how long prediction inputs and outputs are kept
(`Organization.prediction_retention`); a beat task erases them after that.

Only the content goes: the prediction row, its status, token counts and timings stay, and
the usage ledger is not touched, so invoices and usage charts are unchanged.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F
from django.utils import timezone

from inference import events, files
from inference.models import TERMINAL_STATUSES, Prediction

ERASE_BATCH_SIZE = 500


def _due(now: datetime):
    expires_at = ExpressionWrapper(
        F("completed_at") + F("org__prediction_retention"), output_field=DateTimeField()
    )
    return (
        Prediction.objects.filter(
            data_removed_at__isnull=True,
            status__in=TERMINAL_STATUSES,
            completed_at__isnull=False,
        )
        .annotate(expires_at=expires_at)
        .filter(expires_at__lte=now)
    )


def _erase_batch(now: datetime) -> list[str]:
    with transaction.atomic():
        # SKIP LOCKED: two beat runs that overlap split the work instead of waiting.
        ids = list(
            _due(now)
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("id", flat=True)[:ERASE_BATCH_SIZE]
        )
        Prediction.objects.filter(id__in=ids, data_removed_at__isnull=True).update(
            input={}, output=None, logs="", data_removed_at=now
        )
    return ids


def erase_expired_predictions(now: datetime | None = None) -> int:
    """Erases inputs, outputs, logs and event logs past their org's retention; returns
    how many predictions were erased."""
    now = now or timezone.now()
    erased = 0
    while ids := _erase_batch(now):
        events.erase(ids)
        files.erase_for_predictions(ids)
        erased += len(ids)
    return erased
