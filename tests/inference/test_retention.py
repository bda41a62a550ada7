"""Data retention: inputs and outputs go after the org's period; the ledger stays."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import CallCost, UsagePeriod, UsageRecord
from inference import events
from inference.models import Prediction, Status
from inference.retention import erase_expired_predictions
from models_hub.demo import load_demo_catalog
from portal import services
from portal.errors import InvalidInput, NotAllowed
from portal.models import AuditLog

pytestmark = pytest.mark.django_db


@pytest.fixture
def echo():
    return next(listing for listing in load_demo_catalog() if listing.slug == "echo")


def finished(org, echo, *, ago: timedelta, status: str = Status.SUCCEEDED) -> Prediction:
    now = timezone.now()
    prediction = Prediction.objects.create(
        org=org, model=echo, status=status, input={"prompt": "secret"}, output="secret",
        logs="loading", input_tokens=3, output_tokens=5, completed_at=now - ago,
    )  # fmt: skip
    period, _ = UsagePeriod.objects.get_or_create(
        org=org, start=now - timedelta(days=40), defaults={"end": now + timedelta(days=1)}
    )
    UsageRecord.objects.create(prediction=prediction, org=org, period=period, model=echo)
    CallCost.objects.create(
        prediction=prediction, org=org, model=echo, currency="usd", requests=1,
        input_tokens=3, output_tokens=5,
    )  # fmt: skip
    events.append(prediction.id, "output", "secret")
    return prediction


def test_only_predictions_past_their_orgs_retention_are_erased(org, outsider_org, echo):
    outsider_org.prediction_retention = timedelta(hours=1)
    outsider_org.save()
    old = finished(org, echo, ago=timedelta(days=31))
    recent = finished(org, echo, ago=timedelta(days=29))
    theirs = finished(outsider_org, echo, ago=timedelta(hours=2))
    running = Prediction.objects.create(
        org=org, model=echo, status=Status.PROCESSING, input={"prompt": "x"}
    )

    assert erase_expired_predictions() == 2

    for prediction in (old, theirs):
        prediction.refresh_from_db()
        assert prediction.input == {} and prediction.output is None and prediction.logs == ""
        assert prediction.data_removed_at is not None
        assert not events.log_exists(prediction.id)
        # The ledger and the metrics stay: invoices and usage charts do not change.
        assert prediction.call_cost.output_tokens == 5
        assert prediction.output_tokens == 5 and prediction.status == Status.SUCCEEDED
    recent.refresh_from_db()
    running.refresh_from_db()
    assert recent.output == "secret" and events.log_exists(recent.id)
    assert running.input == {"prompt": "x"}
    assert erase_expired_predictions() == 0


def test_erased_prediction_reads_as_data_removed(
    org, echo, token_for, api_client, client_for, owner
):
    prediction = finished(org, echo, ago=timedelta(days=31))
    erase_expired_predictions()
    body = api_client(token_for(org)).get(f"/api/v1/predictions/{prediction.id}").json()
    assert body["data_removed"] is True and body["input"] == {} and body["output"] is None
    page = client_for(owner, org).get(f"/predictions/{prediction.id}/").content.decode()
    assert "were erased" in page and "secret" not in page


def test_admin_sets_retention_member_cannot(org, owner, teammate, client_for):
    response = client_for(owner, org).post("/org/retention/", {"retention": "3600"})
    assert response.status_code == 302
    org.refresh_from_db()
    assert org.prediction_retention == timedelta(hours=1)
    assert AuditLog.objects.filter(org=org, action="org.retention_changed").count() == 1

    assert (
        client_for(teammate, org).post("/org/retention/", {"retention": "86400"}).status_code == 403
    )
    org.refresh_from_db()
    assert org.prediction_retention == timedelta(hours=1)


@pytest.mark.parametrize("value", ["", "60", "abc", "-3600", "9" * 40])
def test_bad_retention_changes_nothing(org, owner, client_for, value):
    client_for(owner, org).post("/org/retention/", {"retention": value})
    org.refresh_from_db()
    assert org.prediction_retention == timedelta(days=30)


def test_service_refuses_under_an_hour_and_non_admins(org, owner, teammate):
    with pytest.raises(InvalidInput):
        services.set_prediction_retention(org, owner, timedelta(minutes=59))
    with pytest.raises(NotAllowed):
        services.set_prediction_retention(org, teammate, timedelta(days=1))


def test_outsider_cannot_change_another_orgs_retention(org, outsider, client_for):
    client_for(outsider).post("/org/retention/", {"retention": "3600"})
    org.refresh_from_db()
    assert org.prediction_retention == timedelta(days=30)
