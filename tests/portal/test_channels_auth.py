"""The Channels middleware resolves the same principal as the REST API."""

import pytest
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import URLRouter
from channels.testing.websocket import WebsocketCommunicator
from django.urls import path

from portal import services
from portal.channels_auth import PrincipalMiddlewareStack

pytestmark = pytest.mark.django_db(transaction=True)


class WhoAmI(AsyncJsonWebsocketConsumer):
    async def connect(self):
        principal = self.scope["principal"]
        if principal is None:
            await self.close(code=4401)
            return
        await self.accept()
        await self.send_json({"org": principal.org.slug, "scopes": sorted(principal.scopes)})


application = PrincipalMiddlewareStack(URLRouter([path("ws/whoami/", WhoAmI.as_asgi())]))


async def connect(headers: list[tuple[bytes, bytes]]):
    communicator = WebsocketCommunicator(application, "/ws/whoami/", headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


async def test_bearer_token_resolves_to_its_org(org, owner):
    issued = await database_sync_to_async(services.issue_token)(org, owner, "ws", scopes=["read"])
    communicator, connected, _ = await connect(
        [(b"authorization", f"Bearer {issued.plaintext}".encode())]
    )
    assert connected
    assert await communicator.receive_json_from() == {"org": org.slug, "scopes": ["read"]}
    await communicator.disconnect()


@pytest.mark.parametrize("header", [b"Bearer mp_aaaaaaaa_" + b"B" * 40, b"Bearer junk"])
async def test_bad_or_revoked_token_is_refused(org, owner, header):
    _, connected, code = await connect([(b"authorization", header)])
    assert not connected and code == 4401


async def test_revoked_token_is_refused(org, owner):
    issued = await database_sync_to_async(services.issue_token)(org, owner, "ws")
    await database_sync_to_async(services.revoke_token)(org, owner, issued.token.pk)
    _, connected, code = await connect([(b"authorization", f"Bearer {issued.plaintext}".encode())])
    assert not connected and code == 4401


async def test_session_cookie_resolves_to_the_current_org(owner, org, client_for):
    client = await database_sync_to_async(client_for)(owner, org)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator, connected, _ = await connect([(b"cookie", cookie)])
    assert connected
    assert (await communicator.receive_json_from())["org"] == org.slug
    await communicator.disconnect()


async def test_anonymous_socket_is_refused():
    _, connected, code = await connect([])
    assert not connected and code == 4401
