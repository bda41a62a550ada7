"""`WS /ws/predictions/{id}/`: the same events as the SSE stream, as JSON messages.

Close codes: 1000 after `done`; before the handshake completes 4401 (not authenticated),
4404 (no such prediction for this org), 4400 (bad `?from=`); after it, 4429 when the org
already holds settings.WS_MAX_CONNECTIONS_PER_ORG open sockets (retry once one closes).
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from inference.streaming import events_after, parse_offset, watchable
from portal import ratelimit
from portal.errors import PortalError

CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400
# HTTP's 429 in the application range (4000-4999) of WebSocket close codes.
CLOSE_TOO_MANY_CONNECTIONS = 4429

acquire_connection = sync_to_async(ratelimit.acquire_connection, thread_sensitive=False)
release_connection = sync_to_async(ratelimit.release_connection, thread_sensitive=False)


class PredictionConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        principal = self.scope.get("principal")
        if principal is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            after = parse_offset((query.get("from") or [""])[0])
            prediction = await watchable(principal, self.scope["url_route"]["kwargs"]["id"])
        except PortalError as exc:
            await self.close(code=CLOSE_NOT_FOUND if exc.status == 404 else CLOSE_BAD_REQUEST)
            return
        if not await acquire_connection(principal.org.pk):
            # Accepted first: a close before the handshake reaches clients as a bare HTTP
            # 403, and they need the code to know to back off rather than re-authenticate.
            await self.accept()
            await self.close(code=CLOSE_TOO_MANY_CONNECTIONS)
            return
        self.slot_org_id = principal.org.pk
        await self.accept()
        self.pump = asyncio.create_task(self._send_events(prediction.id, after))

    async def _send_events(self, prediction_id: str, after: int) -> None:
        try:
            async for event in events_after(prediction_id, after):
                if event is not None:
                    await self.send_json(event.as_message())
            await self.close(code=1000)
        except OSError:
            # The client went away mid-send (ASGI servers raise an OSError subclass);
            # it reconnects with ?from= if it wants the rest.
            return

    async def disconnect(self, code: int) -> None:
        pump = getattr(self, "pump", None)
        if pump is not None:
            pump.cancel()
        slot_org_id = getattr(self, "slot_org_id", None)
        if slot_org_id is not None:
            self.slot_org_id = None  # once, even if disconnect runs twice
            await release_connection(slot_org_id)
