"""Predictions in Django admin: operators find a customer's call and read it, and cannot
add, edit or delete one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from inference.models import Prediction, Source, Status
from models_hub.demo import load_demo_catalog

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:inference_prediction_changelist")
# As long as an embedding's output: far past what the page shows.
EMBEDDING = [[0.123456789] * 3000]


@pytest.fixture
def catalog():
    return {listing.slug: listing for listing in load_demo_catalog()}


@pytest.fixture
def prediction(org, owner, catalog) -> Prediction:
    created = timezone.now() - timedelta(seconds=3)
    done = Prediction.objects.create(
        org=org,
        user=owner,
        model=catalog["all-minilm-l6-v2"],
        input={"input": "<script>alert('x')</script>"},
        output=EMBEDDING,
        logs="loaded\n<b>ran</b>",
        status=Status.SUCCEEDED,
        source=Source.OPENAI,
    )
    Prediction.objects.filter(pk=done.pk).update(
        created_at=created, completed_at=created + timedelta(seconds=1.5)
    )
    return Prediction.objects.get(pk=done.pk)


@pytest.fixture
def other(outsider_org, outsider, catalog) -> Prediction:
    return Prediction.objects.create(
        org=outsider_org, user=outsider, model=catalog["echo"], input={"prompt": "hi"}
    )


@pytest.fixture
def operator(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def listed(client: Client, **params: str) -> str:
    response = client.get(CHANGELIST, params)
    assert response.status_code == 200
    return response.content.decode()


def test_the_list_shows_each_prediction_at_a_glance(operator, prediction, other):
    page = listed(operator)
    for text in (prediction.id, "Acme AI", "all-minilm-l6-v2", "succeeded", "openai", "1.50 s"):
        assert text in page
    assert other.id in page


@pytest.mark.parametrize("query", ["id", "Acme AI", "acme-ai", "all-minilm-l6-v2"])
def test_search_by_id_org_and_model(operator, prediction, other, query):
    term = prediction.id if query == "id" else query
    if query == "acme-ai":
        term = prediction.org.slug
    page = listed(operator, q=term)
    assert prediction.id in page
    assert other.id not in page


def test_filters_by_status_and_source(operator, prediction, other):
    page = listed(operator, status__exact=Status.SUCCEEDED, source__exact=Source.OPENAI)
    assert prediction.id in page and other.id not in page
    page = listed(operator, status__exact=Status.STARTING, source__exact=Source.API)
    assert other.id in page and prediction.id not in page


def test_the_page_shows_input_output_and_logs_escaped_and_cut(operator, prediction):
    response = operator.get(reverse("admin:inference_prediction_change", args=[prediction.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "&lt;script&gt;alert" in page and "<script>alert" not in page
    assert "&lt;b&gt;ran&lt;/b&gt;" in page
    assert "<pre>[\n  [\n    0.123456789," in page  # indented JSON
    assert "more characters" in page
    assert len(page) < 60_000  # not the whole embedding
    assert 'name="_save"' not in page and "/delete/" not in page


def test_retention_erased_data_says_so(operator, prediction):
    Prediction.objects.filter(pk=prediction.pk).update(
        input={}, output=None, logs="", data_removed_at=timezone.now()
    )
    page = operator.get(reverse("admin:inference_prediction_change", args=[prediction.pk]))
    assert "Erased by the org&#x27;s retention period" in page.content.decode()


def test_operators_cannot_add_edit_or_delete(operator, prediction):
    change = reverse("admin:inference_prediction_change", args=[prediction.pk])
    assert operator.get(reverse("admin:inference_prediction_add")).status_code == 403
    assert operator.post(change, {"status": Status.FAILED}).status_code == 403
    delete = reverse("admin:inference_prediction_delete", args=[prediction.pk])
    assert operator.post(delete, {"post": "yes"}).status_code == 403
    bulk = operator.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [prediction.pk]}
    )
    assert bulk.status_code in (200, 302)
    prediction.refresh_from_db()
    assert prediction.status == Status.SUCCEEDED


def test_non_staff_are_sent_to_log_in(owner, prediction, client_for):
    client = client_for(owner)
    for url in (CHANGELIST, reverse("admin:inference_prediction_change", args=[prediction.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
