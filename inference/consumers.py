"""`WS /ws/predictions/{id}/`: the same events as the SSE stream, as JSON messages."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from inference.streaming import events_after, parse_offset, watchable
from portal.errors import PortalError

CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400


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
