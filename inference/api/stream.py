"""`GET /api/v1/predictions/{id}/stream`: Server-Sent Events tailing the event log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse

from inference.concurrency import Kind, Slot
from inference.events import Event
from inference.streaming import (
    CredentialsRevoked,
    StreamGuard,
    final_event_if_expired,
    find_watchable,
    guarded_tail,
    parse_offset,
    start_holding_slot,
)
from portal.auth import SESSION_ORG_KEY, Principal, resolve_bearer, resolve_session
from portal.errors import AuthenticationFailed, PortalError, RateLimited
from portal.middleware import error_body
from portal.stream_handler import EventStreamResponse

KEEPALIVE = b": keep-alive\n\n"


def _principal(request: HttpRequest) -> Principal | None:
    principal = resolve_bearer(request.headers.get("Authorization"))
    if principal is not None:
        return principal
    return resolve_session(request.user, request.session.get(SESSION_ORG_KEY))


def _error(exc: PortalError) -> JsonResponse:
    response = JsonResponse(
        error_body(exc.type, exc.code, exc.message, exc.param), status=exc.status
    )
    if isinstance(exc, RateLimited):
        response["Retry-After"] = str(exc.retry_after)
    return response


def _error_event(exc: PortalError) -> bytes:
    # No `id:` line: the client's Last-Event-ID stays the last event of the log.
    body = json.dumps(error_body(exc.type, exc.code, exc.message, exc.param))
    return f"event: error\ndata: {body}\n\n".encode()


async def _sse(prediction_id: str, after: int, guard: StreamGuard) -> AsyncIterator[bytes]:
    """The live events after `after`: run on the connection's task once the request is
    finished (portal.stream_handler), so with no database lookup left to make."""
    try:
        async with aclosing(guarded_tail(prediction_id, after, guard)) as tail:
            async for event in tail:
                yield KEEPALIVE if event is None else event.sse
    except CredentialsRevoked as exc:
        yield _error_event(exc)
    finally:
        await guard.release()


async def _replay(final: Event, guard: StreamGuard) -> AsyncIterator[bytes]:
    """The final event of a prediction whose log has expired."""
    try:
        yield final.sse
    finally:
        await guard.release()


@dataclass(frozen=True)
class _Opened:
    principal: Principal
    prediction_id: str
    after: int
    slot: Slot
    # The one event to replay when the prediction's log has expired; None: tail the log.
    final: Event | None


def _open(request: HttpRequest, prediction_id: str) -> _Opened:
    """Everything the stream needs from the database and its org's stream slot, in one
    call on the request's thread (see `start_holding_slot`): an open was six thread hops,
    each one a wait behind the event loop's other work."""
    principal = _principal(request)
    if principal is None:
        raise AuthenticationFailed("Authentication credentials were not provided.")
    prediction = find_watchable(principal, prediction_id)
    after = parse_offset(request.headers.get("Last-Event-ID") or request.GET.get("from"))
    slot, final = start_holding_slot(
        principal, Kind.STREAM, lambda: final_event_if_expired(prediction.id)
    )
    return _Opened(principal, prediction.id, after, slot, final)


async def prediction_stream(request: HttpRequest, prediction_id: str) -> HttpResponse:
    if request.method != "GET":
        return JsonResponse(
            error_body("invalid_request_error", "method_not_allowed", "Method not allowed."),
            status=405,
        )
    try:
        opened = await sync_to_async(_open)(request, prediction_id)
    except PortalError as exc:
        return _error(exc)
    guard = StreamGuard.holding(opened.principal, opened.slot)
    if opened.final is not None:
        return EventStreamResponse(_replay(opened.final, guard))
    return EventStreamResponse(_sse(opened.prediction_id, opened.after, guard))
