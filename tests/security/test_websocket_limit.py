"""Open WebSockets per org are capped across processes; the socket over the cap is closed
with 4429 after the handshake, so the client can read the code and back off."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing.websocket import WebsocketCommunicator

from inference.consumers import CLOSE_TOO_MANY_CONNECTIONS
from inference.models import Prediction, Status
from portal import ratelimit, services
from portal.channels_auth import PrincipalMiddlewareStack
from portal.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)
application = PrincipalMiddlewareStack(URLRouter(websocket_urlpatterns))


@database_sync_to_async
def running_prediction(org, listing) -> Prediction:
    """Still processing with an empty log: its socket stays open until closed."""
    return Prediction.objects.create(org=org, model=listing, status=Status.PROCESSING)


@database_sync_to_async
def bearer(org, user) -> list[tuple[bytes, bytes]]:
    plaintext = services.issue_token(org, user, "ws").plaintext
    return [(b"authorization", f"Bearer {plaintext}".encode())]


async def open_socket(prediction: Prediction, headers) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, f"/ws/predictions/{prediction.id}/", headers=headers
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def test_sockets_over_the_org_cap_are_closed_4429(
    settings, org, owner, outsider_org, outsider, echo_listing
):
    settings.WS_MAX_CONNECTIONS_PER_ORG = 2
    prediction = await running_prediction(org, echo_listing)
    headers = await bearer(org, owner)
    held = [await open_socket(prediction, headers) for _ in range(2)]
    assert await database_sync_to_async(ratelimit.open_connections)(org.pk) == 2

    refused = await open_socket(prediction, headers)
    assert await refused.receive_output() == {
        "type": "websocket.close",
        "code": CLOSE_TOO_MANY_CONNECTIONS,
    }
    # The refused socket never held a slot.
    assert await database_sync_to_async(ratelimit.open_connections)(org.pk) == 2

    # Another org is not affected by this one's sockets.
    theirs = await running_prediction(outsider_org, echo_listing)
    other = await open_socket(theirs, await bearer(outsider_org, outsider))
    assert await other.receive_nothing(timeout=0.2)
    await other.disconnect()

    # Closing one frees its slot for the next socket.
    await held[0].disconnect()
    assert await database_sync_to_async(ratelimit.open_connections)(org.pk) == 1
    again = await open_socket(prediction, headers)
    assert await again.receive_nothing(timeout=0.2)
    for communicator in (held[1], again):
        await communicator.disconnect()
    assert await database_sync_to_async(ratelimit.open_connections)(org.pk) == 0


async def test_refused_sockets_hold_no_slot(settings, org, owner, echo_listing):
    """A socket refused before accept (missing prediction) must not leak a slot."""
    settings.WS_MAX_CONNECTIONS_PER_ORG = 1
    headers = await bearer(org, owner)
    missing = WebsocketCommunicator(application, "/ws/predictions/doesnotexist/", headers=headers)
    assert await missing.connect() == (False, 4404)
    prediction = await running_prediction(org, echo_listing)
    communicator = await open_socket(prediction, headers)
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


def test_a_leaked_counter_expires(settings, org):
    """A process killed mid-connection never decrements: the TTL forgets its slots."""
    settings.WS_MAX_CONNECTIONS_PER_ORG = 1
    assert ratelimit.acquire_connection(org.pk)
    assert not ratelimit.acquire_connection(org.pk)
    ttl = ratelimit.sync_client().ttl(ratelimit.ws_org_key(org.pk))
    assert 0 < ttl <= settings.WS_CONNECTION_COUNTER_TTL_SECONDS
    ratelimit.release_connection(org.pk)
    ratelimit.release_connection(org.pk)  # a late second release never goes below zero
    assert ratelimit.open_connections(org.pk) == 0
    assert ratelimit.acquire_connection(org.pk)
