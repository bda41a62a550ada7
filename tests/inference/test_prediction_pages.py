"""The predictions history pages and the read side of the API, without a worker."""

import pytest
from asgiref.sync import async_to_sync

from inference.models import Prediction, Status
from models_hub.demo import load_demo_catalog

pytestmark = pytest.mark.django_db


async def read_all(response) -> str:
    return "".join([part.decode() async for part in response.streaming_content])


@pytest.fixture
def prediction(org, owner):
    echo = next(listing for listing in load_demo_catalog() if listing.slug == "echo")
    return Prediction.objects.create(
        org=org, user=owner, model=echo, input={"prompt": "hi"}, output="hi",
        status=Status.SUCCEEDED, input_tokens=1, output_tokens=1,
    )  # fmt: skip


def test_members_see_their_orgs_predictions(prediction, teammate, org, client_for):
    client = client_for(teammate, org)
    assert prediction.id in client.get("/predictions/").content.decode()
    detail = client.get(f"/predictions/{prediction.id}/")
    assert detail.status_code == 200 and "succeeded" in detail.content.decode()


def test_status_filter_and_bad_page_numbers(prediction, owner, org, client_for):
    client = client_for(owner, org)
    assert prediction.id not in client.get("/predictions/?status=failed").content.decode()
    assert prediction.id in client.get("/predictions/?status=bogus").content.decode()
    assert client.get("/predictions/?page=abc").status_code == 200
    assert client.get("/predictions/?page=999").status_code == 200


def test_outsider_gets_404_like_a_missing_prediction(prediction, outsider, client_for):
    client = client_for(outsider)
    assert prediction.id not in client.get("/predictions/").content.decode()
    assert client.get(f"/predictions/{prediction.id}/").status_code == 404
    assert client.get("/predictions/doesnotexist/").status_code == 404


def test_pages_need_login(prediction, client):
    assert client.get("/predictions/").status_code == 302
    assert client.get(f"/predictions/{prediction.id}/").status_code == 302


def test_api_read_side(prediction, org, outsider_org, token_for, api_client):
    own = api_client(token_for(org, scopes=["read"]))
    body = own.get(f"/api/v1/predictions/{prediction.id}").json()
    assert body["output"] == "hi" and body["metrics"]["output_tokens"] == 1
    assert body["urls"]["stream"].endswith(f"/api/v1/predictions/{prediction.id}/stream")
    theirs = api_client(token_for(outsider_org))
    missing = theirs.get("/api/v1/predictions/doesnotexist")
    hidden = theirs.get(f"/api/v1/predictions/{prediction.id}")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["message"] == missing.json()["error"]["message"]
    assert theirs.post(f"/api/v1/predictions/{prediction.id}/cancel").status_code == 404
    assert api_client().get("/api/v1/predictions").status_code == 401
    read_only = own.post(f"/api/v1/predictions/{prediction.id}/cancel")
    assert read_only.status_code == 403


def test_stream_of_a_finished_prediction_with_an_expired_log_replays_from_the_database(
    prediction, org, token_for, api_client
):
    response = api_client(token_for(org)).get(f"/api/v1/predictions/{prediction.id}/stream")
    assert response.status_code == 200
    body = async_to_sync(read_all)(response)
    assert "event: done" in body and '"output": "hi"' in body


@pytest.mark.parametrize("offset", ["-1", "abc", "1e3", "9" * 20])
def test_stream_rejects_bad_offsets(prediction, org, token_for, api_client, offset):
    response = api_client(token_for(org)).get(
        f"/api/v1/predictions/{prediction.id}/stream?from={offset}"
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "from"


def test_list_filters_validate(prediction, org, token_for, api_client):
    client = api_client(token_for(org))
    assert client.get("/api/v1/predictions?status=succeeded").json()["count"] == 1
    assert client.get("/api/v1/predictions?model=echo").json()["count"] == 1
    assert client.get("/api/v1/predictions?model=other").json()["count"] == 0
    assert client.get("/api/v1/predictions?page=99").status_code == 404
