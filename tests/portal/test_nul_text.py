"""PostgreSQL cannot store or compare text holding NUL: such input is a 4xx, never a 500."""

import json

import pytest

from inference.models import Prediction
from portal.errors import NotFound
from portal.scoping import get_for_org

pytestmark = pytest.mark.django_db

NUL = "\x00"

BODIES = {
    "/api/v1/predictions": [
        {"model": "echo", "input": {"prompt": f"a{NUL}b"}},
        {"model": f"echo{NUL}", "input": {"prompt": "x"}},
        {"model": "echo", "input": {"prompt": "x", f"k{NUL}": 1}},
        {"model": "echo", "input": {"prompt": "x"}, "webhook": f"https://e.com/{NUL}"},
    ],
    "/v1/chat/completions": [
        {"model": f"echo{NUL}", "messages": [{"role": "user", "content": "hi"}]},
        {"model": "echo", "messages": [{"role": "user", "content": f"h{NUL}i"}]},
        {"model": "echo", "messages": [{"role": "user", "content": "hi", NUL: [NUL]}]},
    ],
    "/v1/completions": [{"model": "echo", "prompt": f"{NUL}"}],
    "/v1/embeddings": [{"model": "all-minilm-l6-v2", "input": [f"a{NUL}"]}],
}


@pytest.mark.parametrize(
    ("path", "body"), [(path, body) for path, bodies in BODIES.items() for body in bodies]
)
def test_nul_in_a_body_is_400_and_stores_nothing(client, org, token_for, path, body):
    response = client.post(
        path,
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token_for(org)}",
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "malformed_json"
    assert "NUL" in response.json()["error"]["message"]
    assert not Prediction.objects.exists()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/predictions/abc%00def",
        "/api/v1/predictions/abc%00def/stream",
        "/api/v1/predictions/abc%00def/cancel",
        "/api/v1/predictions?status=%00",
        "/api/v1/predictions?model=a%00",
        "/api/v1/models/echo%00",
        "/v1/models/echo%00",
    ],
)
def test_nul_in_an_api_path_or_filter_is_a_4xx(client, org, token_for, path):
    method = client.post if path.endswith("/cancel") else client.get
    response = method(path, HTTP_AUTHORIZATION=f"Bearer {token_for(org)}")
    assert 400 <= response.status_code < 500, response.content


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/models?search=%00",
        "/api/v1/usage?model=%00",
        "/predictions/?status=%00",
        "/predictions/abc%00/",
        "/models/?q=%00&task=%00",
        "/models/echo%00/",
        "/billing/usage/?model=%00&from=%00",
        "/billing/usage.csv?model=%00",
        "/org/audit/?action=%00",
        "/invitations/abc%00/",
    ],
)
def test_nul_anywhere_else_never_breaks_a_page(org, owner, client_for, token_for, path):
    client = client_for(owner, org)
    response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {token_for(org)}")
    assert response.status_code < 500, response.content


def test_scoped_lookup_of_an_id_holding_nul_is_not_found(org):
    with pytest.raises(NotFound):
        get_for_org(Prediction.objects.all(), org, pk="abc\x00def")
