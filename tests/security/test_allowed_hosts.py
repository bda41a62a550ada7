"""Every route checks the Host header against ALLOWED_HOSTS, the lean ASGI handlers of
/v1 and of the prediction event stream as much as the site's: a request for a name the
portal does not serve (DNS rebinding, a poisoned cache in front building links from the
Host) is a 400 before any view, token lookup or admission runs."""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import sync_to_async

from inference.models import Prediction
from models_hub.demo import load_demo_catalog
from portal.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

FOREIGN_HOST = "evil.example"


def asgi_client(host: str, **headers: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application, client=("198.51.100.40", 40000))
    return httpx.AsyncClient(
        transport=transport, base_url=f"http://{host}", headers=headers, timeout=10
    )


@pytest.fixture
def bearer(org, token_for) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(org)}"}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models",  # the /v1 handler
        "/api/v1/predictions/p_missing/stream",  # the event stream's handler
        "/api/v1/models",  # the site's handler
    ],
)
async def test_a_foreign_host_is_refused_on_every_handler(bearer, path):
    async with asgi_client(FOREIGN_HOST, **bearer) as client:
        response = await client.get(path)
    assert response.status_code == 400, response.content[:200]
    assert response.json()["error"]["code"] == "bad_request"


async def test_a_page_for_a_foreign_host_is_djangos_400():
    async with asgi_client(FOREIGN_HOST) as client:
        response = await client.get("/pricing/")
    assert response.status_code == 400
    assert not response.headers["Content-Type"].startswith("application/json")


async def test_a_foreign_host_admits_nothing(bearer):
    await sync_to_async(load_demo_catalog)()
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    async with asgi_client(FOREIGN_HOST, **bearer) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert not await Prediction.objects.aexists()


async def test_a_served_host_still_reaches_the_views(bearer):
    async with asgi_client("testserver", **bearer) as client:
        assert (await client.get("/v1/models")).status_code == 200
        missing = await client.get("/api/v1/predictions/p_missing/stream")
    assert missing.status_code == 404
