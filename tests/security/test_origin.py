"""The WebSocket Origin check (issue #11, item 13): a browser's socket is accepted only from
the site's own origin (scheme, host and port), like Django's CSRF check for forms; a client
without Origin (not a browser) needs a bearer token."""

from __future__ import annotations

import pytest
from channels.routing import URLRouter
from channels.testing.websocket import WebsocketCommunicator
from django.urls import path

from portal import services
from portal.channels_auth import BrowserOriginValidator, PrincipalMiddlewareStack
from tests.portal.test_channels_auth import WhoAmI

pytestmark = pytest.mark.django_db(transaction=True)

# The same layers as portal.asgi's websocket branch, around a consumer that says who it sees.
application = BrowserOriginValidator(
    PrincipalMiddlewareStack(URLRouter([path("ws/whoami/", WhoAmI.as_asgi())]))
)
HOST = "127.0.0.1:8123"


async def connect(
    origin: str | None, *, host: str = HOST, scheme: str = "ws", extra=(), cookie: bytes = b""
):
    headers = [(b"host", host.encode()), *extra]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie:
        headers.append((b"cookie", cookie))
    communicator = WebsocketCommunicator(application, "/ws/whoami/", headers=headers)
    communicator.scope["scheme"] = scheme
    connected, code = await communicator.connect()
    if connected:
        await communicator.disconnect()
    return connected, code


@pytest.fixture
def session_cookie(owner, org, client_for, settings) -> bytes:
    settings.ALLOWED_HOSTS = ["127.0.0.1", "portal.example.com"]
    client = client_for(owner, org)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
def bearer(org, owner) -> tuple[bytes, bytes]:
    issued = services.issue_token(org, owner, "ws", scopes=["read"])
    return (b"authorization", f"Bearer {issued.plaintext}".encode())


async def test_the_exact_same_origin_is_accepted(session_cookie):
    connected, _ = await connect(f"http://{HOST}", cookie=session_cookie)
    assert connected


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:8124",  # another port: another origin (another app on the host)
        "https://127.0.0.1:8123",  # another scheme
        "http://127.0.0.1",  # port 80
        "http://portal.example.com:8123",  # an allowed host, but not this site's origin
        "http://evil.example",
        "null",
    ],
)
async def test_another_origin_is_refused(session_cookie, origin):
    connected, _ = await connect(origin, cookie=session_cookie)
    assert not connected


async def test_a_host_outside_allowed_hosts_is_refused_even_when_origin_matches(session_cookie):
    # DNS rebinding: evil.example resolves to us, and the browser's Origin matches its Host.
    connected, _ = await connect("http://evil.example", host="evil.example", cookie=session_cookie)
    assert not connected


async def test_default_ports_compare_equal(session_cookie):
    host = "portal.example.com"
    assert (await connect(f"https://{host}", host=host, scheme="wss", cookie=session_cookie))[0]
    assert (await connect(f"http://{host}:80", host=host, cookie=session_cookie))[0]
    assert not (await connect(f"http://{host}", host=host, scheme="wss", cookie=session_cookie))[0]


async def test_forwarded_proto_counts_only_behind_a_trusted_proxy(session_cookie, settings):
    host = "portal.example.com"
    tls = [(b"x-forwarded-proto", b"https")]
    # No proxy configured: the header is the client's own claim and changes nothing.
    settings.SECURE_PROXY_SSL_HEADER = None
    assert not (await connect(f"https://{host}", host=host, extra=tls, cookie=session_cookie))[0]
    # Our TLS-terminating proxy says the browser spoke https (settings derive this header
    # from TRUSTED_PROXY_COUNT).
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert (await connect(f"https://{host}", host=host, extra=tls, cookie=session_cookie))[0]
    assert not (await connect(f"http://{host}", host=host, extra=tls, cookie=session_cookie))[0]


async def test_csrf_trusted_origins_are_accepted(session_cookie, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.org"]
    assert (await connect("https://app.example.org", cookie=session_cookie))[0]
    assert not (await connect("http://app.example.org", cookie=session_cookie))[0]


async def test_a_client_without_origin_needs_a_bearer_token(session_cookie, bearer):
    assert not (await connect(None, cookie=session_cookie))[0]
    assert (await connect(None, extra=[bearer]))[0]


async def test_a_bearer_token_does_not_excuse_a_foreign_origin(bearer):
    assert not (await connect("http://evil.example", extra=[bearer]))[0]


async def test_the_asgi_application_checks_the_origin():
    from portal.asgi import application as site

    assert isinstance(site.application_mapping["websocket"], BrowserOriginValidator)
