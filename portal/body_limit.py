"""Request body limits in the ASGI layer, in front of Django.

Django's ASGI handler reads the whole body into a temp file (on disk past 2.5 MB) before
any middleware runs, so a limit checked in Django comes after the damage: a 300 MiB POST
was spooled to disk before its 413. Here the limit is checked before Django sees the
request: a declared `Content-Length` over it is answered 413 without reading a byte, and a
body without one (chunked) is counted as it arrives and cut off once it passes the limit.
What is left of the body is never read: the 413 closes the connection.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

from portal.middleware import error_body, is_api_path

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def body_limit(path: str) -> int:
    """The most bytes a request to `path` may carry: the longest matching prefix in
    settings.REQUEST_BODY_LIMITS (whole path segments), else MAX_REQUEST_BODY_BYTES."""
    limit, matched = settings.MAX_REQUEST_BODY_BYTES, -1
    for prefix, prefix_limit in settings.REQUEST_BODY_LIMITS.items():
        prefix = prefix.rstrip("/")
        if (path == prefix or path.startswith(prefix + "/")) and len(prefix) > matched:
            limit, matched = prefix_limit, len(prefix)
    return limit


class MalformedLength(ValueError):
    pass


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The request's Content-Length, None when it has none (a chunked body)."""
    values = {value.strip() for name, value in headers if name.lower() == b"content-length"}
    if not values:
        return None
    if len(values) > 1 or not all(value.isdigit() for value in values):
        raise MalformedLength()
    return int(values.pop())


async def send_error(send: Send, path: str, status: int, message: str) -> None:
    """The error shape for /api and /v1, a short text elsewhere; then the connection closes,
    so the server never reads what is left of the body."""
    if is_api_path(path):
        code = "body_too_large" if status == 413 else "bad_request"
        body = json.dumps(error_body("invalid_request_error", code, message)).encode()
        content_type = b"application/json"
    else:
        body, content_type = message.encode(), b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def too_large_message(limit: int) -> str:
    return f"The request body is larger than this endpoint's limit of {limit} bytes."


class _CountingChannel:
    """The app's receive and send for one request: counts the body's bytes and, once they
    pass the limit, tells the app the client went away (Django then drops the request
    without answering) and keeps anything the app might still send off the wire."""

    def __init__(self, receive: Receive, send: Send, limit: int):
        self._receive = receive
        self._send = send
        self.limit = limit
        self.received = 0
        self.over_limit = False
        self.response_started = False

    async def receive(self) -> Message:
        if self.over_limit:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.over_limit = True
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.over_limit:
            return
        if message["type"] == "http.response.start":
            self.response_started = True
        await self._send(message)


class BodyLimitMiddleware:
    """Wraps the HTTP application (see the module's docstring)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = body_limit(path)
        try:
            length = declared_length(scope["headers"])
        except MalformedLength:
            await send_error(send, path, 400, "The Content-Length header is not valid.")
            return
        if length is not None and length > limit:
            await send_error(send, path, 413, too_large_message(limit))
            return
        channel = _CountingChannel(receive, send, limit)
        await self.app(scope, channel.receive, channel.send)
        if channel.over_limit and not channel.response_started:
            await send_error(send, path, 413, too_large_message(limit))
