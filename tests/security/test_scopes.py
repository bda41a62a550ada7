"""Token scopes on the OpenAI-compatible layer (issue #11, item 13): listing the models is
a read like every other, so a predict-only token may not enumerate the catalog with it."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def list_models(token: str):
    return Client(headers={"Authorization": f"Bearer {token}"}).get("/v1/models")


def test_v1_models_needs_the_read_scope(org, token_for, echo_listing):
    response = list_models(token_for(org, scopes=["predict"]))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["type"] == "permission_error"
    assert error["code"] == "missing_scope"
    assert "read" in error["message"]
    assert set(error) == {"type", "code", "message", "param"}


def test_v1_models_answers_a_read_token(org, token_for, echo_listing):
    response = list_models(token_for(org, scopes=["read"]))
    assert response.status_code == 200
    assert echo_listing.slug in {model["id"] for model in response.json()["data"]}
