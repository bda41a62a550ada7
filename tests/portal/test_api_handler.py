"""The /v1 API's own ASGI handler (portal/api_handler.py), driven through portal.asgi as
uvicorn drives it: its short chain still adds the security headers, counts the per-IP
limit, answers JSON errors; the site's session and CSRF middleware never run on it."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.api_handler import ApiASGIHandler
from portal.asgi import application
from tests.conftest import fresh_window

pytestmark = pytest.mark.django_db(transaction=True)


def asgi_client(address: str = "198.51.100.20", **headers: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)


@pytest.fixture
def bearer(org, token_for) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(org)}"}


async def test_v1_goes_to_the_api_handler_and_pages_to_the_sites(monkeypatch, bearer):
    import portal.asgi

    served: list[str] = []
    api_handler = portal.asgi.api_asgi_app

    async def recording(scope, receive, send):
        served.append(scope["path"])
        await api_handler(scope, receive, send)

    monkeypatch.setattr(portal.asgi, "api_asgi_app", recording)
    async with asgi_client(**bearer) as client:
        assert (await client.get("/v1/models")).status_code == 200
        assert (await client.get("/api/v1/models")).status_code == 200
        assert (await client.get("/pricing/")).status_code == 200
    assert served == ["/v1/models"]


async def test_v1_answers_with_the_security_headers(bearer):
    async with asgi_client(**bearer) as client:
        response = await client.get("/v1/models")
    assert response.status_code == 200
    assert response.json()["object"] == "list"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "set-cookie" not in response.headers


async def test_an_unknown_v1_path_is_a_json_404(bearer):
    async with asgi_client(**bearer) as client:
        response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_a_missing_token_is_a_json_401():
    async with asgi_client() as client:
        response = await client.get("/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


async def test_the_per_ip_limit_counts_v1_calls(settings, bearer):
    settings.IP_RATE_LIMIT_PER_MINUTE = 3
    fresh_window()
    async with asgi_client("198.51.100.21", **bearer) as client:
        statuses = [(await client.get("/v1/models")).status_code for _ in range(3)]
        limited = await client.get("/v1/models")
    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "ip_rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    async with asgi_client("198.51.100.22", **bearer) as other:
        assert (await other.get("/v1/models")).status_code == 200


@pytest.fixture
def principal_threads(monkeypatch) -> tuple[list[int], threading.Event, threading.Event]:
    """Records the thread each request's token lookup ran on; a request sent with
    `X-Hold` keeps its thread until `release` is set."""
    from inference.api import openai

    threads: list[int] = []
    holding, release = threading.Event(), threading.Event()
    lookup = openai._principal

    def recording(request):
        threads.append(threading.get_ident())
        if request.headers.get("X-Hold"):
            holding.set()
            release.wait(10)
        return lookup(request)

    monkeypatch.setattr(openai, "_principal", recording)
    return threads, holding, release


async def test_requests_one_after_another_reuse_one_thread(bearer, principal_threads):
    threads, _, _ = principal_threads
    async with asgi_client(**bearer) as client:
        for _ in range(3):
            assert (await client.get("/v1/models")).status_code == 200
    assert len(threads) == 3
    assert len(set(threads)) == 1


async def test_a_request_stuck_in_its_sync_code_holds_up_no_other(bearer, principal_threads):
    threads, holding, release = principal_threads
    async with asgi_client(**bearer) as client:
        stuck = asyncio.create_task(client.get("/v1/models", headers={"X-Hold": "1"}))
        assert await asyncio.to_thread(holding.wait, 10)
        try:
            answered = await asyncio.wait_for(client.get("/v1/models"), 10)
        finally:
            release.set()
        assert answered.status_code == 200
        assert (await stuck).status_code == 200
    assert threads[0] != threads[1]


def test_a_sync_only_middleware_is_refused_at_start(settings):
    settings.API_MIDDLEWARE = [
        "portal.api_handler.SecurityMiddleware",
        "portal.middleware.CurrentOrgMiddleware",
    ]
    with pytest.raises(ImproperlyConfigured, match="CurrentOrgMiddleware"):
        ApiASGIHandler()
