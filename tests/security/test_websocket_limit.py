"""Open WebSockets count against the org's stream cap across processes; the socket over the
cap is closed with 4429 after the handshake, so the client can read the code and back off."""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing.websocket import WebsocketCommunicator

from inference import concurrency, events
from inference.consumers import CLOSE_TOO_MANY_CONNECTIONS
from inference.models import Prediction, Status
from portal import services
from portal.channels_auth import PrincipalMiddlewareStack
from portal.errors import RateLimited
from portal.redis_client import sync_client
from portal.routing import websocket_urlpatterns
from tests.livestack import free_port

pytestmark = pytest.mark.django_db(transaction=True)
application = PrincipalMiddlewareStack(URLRouter(websocket_urlpatterns))
open_connections = database_sync_to_async(
    lambda org_id: concurrency.held_count(org_id, concurrency.Kind.STREAM)
)


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
    settings.MAX_CONCURRENT_STREAMS_PER_ORG = 2
    prediction = await running_prediction(org, echo_listing)
    headers = await bearer(org, owner)
    held = [await open_socket(prediction, headers) for _ in range(2)]
    assert await open_connections(org.pk) == 2

    refused = await open_socket(prediction, headers)
    assert await refused.receive_output() == {
        "type": "websocket.close",
        "code": CLOSE_TOO_MANY_CONNECTIONS,
    }
    # The refused socket never held a slot.
    assert await open_connections(org.pk) == 2

    # Another org is not affected by this one's sockets.
    theirs = await running_prediction(outsider_org, echo_listing)
    other = await open_socket(theirs, await bearer(outsider_org, outsider))
    assert await other.receive_nothing(timeout=0.2)
    await other.disconnect()

    # Closing one frees its slot for the next socket.
    await held[0].disconnect()
    assert await open_connections(org.pk) == 1
    again = await open_socket(prediction, headers)
    assert await again.receive_nothing(timeout=0.2)
    for communicator in (held[1], again):
        await communicator.disconnect()
    assert await open_connections(org.pk) == 0


async def test_refused_sockets_hold_no_slot(settings, org, owner, echo_listing):
    """A socket refused before accept (missing prediction) must not leak a slot."""
    settings.MAX_CONCURRENT_STREAMS_PER_ORG = 1
    headers = await bearer(org, owner)
    missing = WebsocketCommunicator(application, "/ws/predictions/doesnotexist/", headers=headers)
    assert await missing.connect() == (False, 4404)
    prediction = await running_prediction(org, echo_listing)
    communicator = await open_socket(prediction, headers)
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


def test_a_leaked_slot_expires_with_its_lease(settings, org):
    """A process killed mid-connection never releases: its slot's lease runs out."""
    settings.MAX_CONCURRENT_STREAMS_PER_ORG = 1
    settings.CONCURRENCY_SLOT_LEASE_SECONDS = 0.5
    leaked = concurrency.acquire(org, concurrency.Kind.STREAM)
    with pytest.raises(RateLimited):
        concurrency.acquire(org, concurrency.Kind.STREAM)
    time.sleep(0.6)
    assert concurrency.held_count(org.pk, concurrency.Kind.STREAM) == 0
    fresh = concurrency.acquire(org, concurrency.Kind.STREAM)
    leaked.release()  # a late release of the expired slot frees nothing of the new one
    assert concurrency.held_count(org.pk, concurrency.Kind.STREAM) == 1
    fresh.release()
    assert concurrency.held_count(org.pk, concurrency.Kind.STREAM) == 0


def test_renewing_or_releasing_a_slot_outlasts_a_redis_outage(settings, org):
    """Streams and waits renew and release in `finally` paths: an outage must not raise
    there (it would end a stream that Redis is about to serve again)."""
    slot = concurrency.acquire(org, concurrency.Kind.STREAM)
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.REDIS_OUTAGE_TOLERANCE_SECONDS = 0
    slot.renew()
    slot.release()


async def test_a_failing_stream_closes_its_socket_1011_and_frees_the_slot(org, owner, echo_listing):
    """A stream that fails server-side must not leave a silent socket holding a slot."""
    prediction = await running_prediction(org, echo_listing)
    corrupt = database_sync_to_async(lambda key: sync_client().set(key, "not a stream"))
    await corrupt(events.stream_key(prediction.id))  # XREAD on it fails (WRONGTYPE)
    communicator = await open_socket(prediction, await bearer(org, owner))
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 1011}
    await communicator.disconnect()
    assert await open_connections(org.pk) == 0
