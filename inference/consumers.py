"""`WS /ws/predictions/{id}/`: the same events as the SSE stream, as JSON messages.

Close codes: 1000 after `done`; before the handshake completes 4401 (not authenticated),
4404 (no such prediction for this org), 4400 (bad `?from=`); after it, 4429 when the org
already holds all the open streams its plan allows (retry once one closes), and 4401 once
the token is revoked or expired or the membership is gone.

Clients have nothing to send: a frame that is not JSON gets an `error` message, any other
is ignored, and the socket stays open either way.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from inference.streaming import (
    CredentialsRevoked,
    StreamGuard,
    events_after,
    parse_offset,
    watchable,
)
from portal import strict_json
from portal.errors import PortalError, RateLimited
from portal.middleware import error_body

CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400
# HTTP's 429 in the application range (4000-4999) of WebSocket close codes.
CLOSE_TOO_MANY_CONNECTIONS = 4429
CLOSE_INTERNAL_ERROR = 1011

logger = logging.getLogger(__name__)


class PredictionConsumer(AsyncJsonWebsocketConsumer):
    guard: StreamGuard | None = None
    pump: asyncio.Task | None = None

    async def __call__(self, scope, receive, send) -> None:
        # The slot goes back however the consumer ends: a clean disconnect, an exception
        # in a handler (which skips `disconnect`), or the server cancelling it.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._stop()

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
        try:
            self.guard = await StreamGuard.open(principal)
        except RateLimited:
            # Accepted first: a close before the handshake reaches clients as a bare HTTP
            # 403, and they need the code to know to back off rather than re-authenticate.
            await self.accept()
            await self.close(code=CLOSE_TOO_MANY_CONNECTIONS)
            return
        await self.accept()
        self.pump = asyncio.create_task(self._send_events(prediction.id, after, self.guard))

    async def _send_events(self, prediction_id: str, after: int, guard: StreamGuard) -> None:
        try:
            async for event in events_after(prediction_id, after, guard):
                if event is not None:
                    await self.send_json(event.as_message())
            await self.close(code=1000)
        except CredentialsRevoked:
            await self.close(code=CLOSE_UNAUTHORIZED)
        except OSError:
            # The client went away mid-send (ASGI servers raise an OSError subclass);
            # it reconnects with ?from= if it wants the rest.
            return
        except Exception:
            # A task's exception is otherwise never seen, and the socket would stay open
            # with nothing to send; 1011 tells the client to reconnect with ?from=.
            logger.exception("WebSocket stream of %s failed", prediction_id)
            await self.close(code=CLOSE_INTERNAL_ERROR)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        try:
            strict_json.loads(text_data if text_data is not None else bytes_data)
        except (ValueError, TypeError):
            await self.send_json(_invalid_frame())

    async def disconnect(self, code: int) -> None:
        await self._stop()

    async def _stop(self) -> None:
        """Stops the pump and gives the slot back; runs once however often it is called."""
        pump, self.pump = self.pump, None
        if pump is not None:
            pump.cancel()
        guard, self.guard = self.guard, None
        if guard is not None:
            await guard.release()


def _invalid_frame() -> dict:
    message = "Frames must be JSON; this socket only sends, so any JSON frame is ignored."
    error = error_body("invalid_request_error", "invalid_frame", message)
    return {"seq": None, "type": "error", "data": error}
