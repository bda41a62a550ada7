"""Outgoing webhooks verify with the `standardwebhooks` library (issue #11, item 12).

A real loopback receiver gets the POST from the delivery code itself; the library, never
our own signer, is the judge of the signature.
"""

from __future__ import annotations

import base64
import re

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from inference import webhooks
from inference.models import Prediction, Status
from models_hub.demo import load_demo_catalog
from models_hub.models import ModelListing
from portal import services
from portal.models import Organization

pytestmark = pytest.mark.django_db

STANDARD_SECRET = re.compile(r"whsec_[A-Za-z0-9+/]+={0,2}")


@pytest.fixture
def echo(db) -> ModelListing:
    return next(listing for listing in load_demo_catalog() if listing.slug == "echo")


@pytest.fixture
def finished(org, owner, echo, receiver) -> Prediction:
    return Prediction.objects.create(
        org=org,
        user=owner,
        model=echo,
        input={"prompt": "hi"},
        output="hi",
        status=Status.SUCCEEDED,
        webhook=receiver.url,
        webhook_events_filter=["completed"],
    )


def test_a_real_delivery_verifies_with_the_standard_webhooks_library(finished, org, receiver):
    webhooks.deliver(finished, "completed", "attempt-1")
    [(headers, body)] = receiver.received
    payload = Webhook(org.webhook_secret).verify(body, headers)
    assert payload["id"] == finished.id and payload["status"] == "succeeded"
    assert headers["webhook-id"] == f"{finished.id}-completed-attempt-1"
    # Another org's secret does not verify it.
    other = Organization.objects.create(slug="other", name="Other")
    with pytest.raises(WebhookVerificationError):
        Webhook(other.webhook_secret).verify(body, headers)


def test_after_rotation_deliveries_verify_with_the_new_secret_only(finished, org, owner, receiver):
    old = org.webhook_secret
    new = services.rotate_webhook_secret(org, owner)
    assert new != old
    finished.org.refresh_from_db()
    webhooks.deliver(finished, "completed", "attempt-2")
    [(headers, body)] = receiver.received
    Webhook(new).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, headers)


def test_new_secrets_are_in_the_standard_form(org, outsider_org):
    for secret in (org.webhook_secret, outsider_org.webhook_secret):
        assert STANDARD_SECRET.fullmatch(secret), secret
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        assert 24 <= len(key) <= 32
    assert org.webhook_secret != outsider_org.webhook_secret
