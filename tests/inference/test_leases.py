"""The lease a worker keeps on the predictions it runs: one thread per process renews them
all (`execution.LeaseKeeper`); the reaper takes over a prediction whose lease lapsed."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from inference.execution import LeaseKeeper
from inference.models import Prediction, Status
from models_hub.demo import load_demo_catalog
from models_hub.models import ModelListing

# The keeper's thread writes on its own connection: it must see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)


def with_lease(org, status: str = Status.PROCESSING) -> Prediction:
    load_demo_catalog()
    return Prediction.objects.create(
        org=org,
        model=ModelListing.objects.get(slug="echo"),
        status=status,
        lease_expires_at=timezone.now(),
    )


def lease_of(prediction: Prediction):
    return Prediction.objects.values_list("lease_expires_at", flat=True).get(pk=prediction.pk)


def wait_for(condition, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_one_keeper_renews_every_running_prediction_and_lets_go_of_finished_ones(settings, org):
    settings.PREDICTION_LEASE_SECONDS = 0.3  # a beat every 0.1 s
    first, second = with_lease(org), with_lease(org)
    keeper = LeaseKeeper()
    with keeper.held(first.id):
        with keeper.held(second.id):
            assert wait_for(lambda: lease_of(first) > timezone.now())
            assert wait_for(lambda: lease_of(second) > timezone.now())
        let_go = lease_of(second)
        time.sleep(0.4)  # several beats
        assert lease_of(second) == let_go
        assert wait_for(lambda: lease_of(first) > let_go)


def test_a_prediction_that_left_processing_is_not_renewed(settings, org):
    settings.PREDICTION_LEASE_SECONDS = 0.3
    finished = with_lease(org, status=Status.SUCCEEDED)
    running = with_lease(org)
    keeper = LeaseKeeper()
    with keeper.held(finished.id), keeper.held(running.id):
        assert wait_for(lambda: lease_of(running) > timezone.now() + timedelta(seconds=0.1))
    assert lease_of(finished) <= timezone.now()
