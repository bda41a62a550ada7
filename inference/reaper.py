"""Fails predictions that nobody will finish: a dead worker's, or one never picked up."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from inference import lifecycle
from inference.models import Prediction, Status
from portal.logs import prediction_context

logger = logging.getLogger(__name__)
WORKER_LOST = "The worker running this prediction stopped unexpectedly."
NEVER_STARTED = "No worker picked up this prediction in time."


def reap() -> int:
    now = timezone.now()
    reaped = 0
    abandoned = Prediction.objects.filter(status=Status.PROCESSING, lease_expires_at__lt=now)
    for prediction in abandoned.select_related("model")[:500]:
        with prediction_context(prediction.id, prediction.org_id):
            reaped += lifecycle.finish(
                prediction, Status.FAILED, error=WORKER_LOST, from_status=Status.PROCESSING
            )
    queued_too_long = now - timedelta(seconds=settings.PREDICTION_QUEUE_TIMEOUT_SECONDS)
    stale = Prediction.objects.filter(status=Status.STARTING, created_at__lt=queued_too_long)
    for prediction in stale.select_related("model")[:500]:
        with prediction_context(prediction.id, prediction.org_id):
            reaped += lifecycle.finish(
                prediction, Status.FAILED, error=NEVER_STARTED, from_status=Status.STARTING
            )
    if reaped:
        logger.warning("reaper failed %d stuck predictions", reaped)
    return reaped
