"""The ASGI handler for `GET /api/v1/predictions/<id>/stream` (Server-Sent Events): an
idle stream holds no thread.

Django's ASGIHandler enters a `ThreadSensitiveContext` per request, and asgiref gives
that context a thread of its own (a one-worker executor) on its first thread-sensitive
call: the site's sync middleware, the `request_started` receivers, the view's lookups.
The thread lives until the response ends, which for a stream is the stream's whole life:
a web process holding 1000 idle streams ran 1000 idle threads (bench/streams.py).

Here a request's context draws its executor from a few single-thread executors that all
streams share, in turn. Each request still runs all its sync code on one thread (its
database connection is that thread's, and `request_finished` closes the connection its
lookups used, back to the pool); between its calls other requests' calls run there.
That is safe because every call on this route leaves the connection in autocommit (no
transaction spans two calls) and the stream gives it back as soon as its lookups are done
(inference.streaming). Opens on different threads overlap their waits; a call stuck on
a database that stopped answering stalls only the opens that share its thread.

Not the alternatives:
- no per-request context at all, so every thread-sensitive call goes to asgiref's one
  process-wide thread: every stream open of the process queues on it, and one slow call
  (a database that stopped answering: the pool's whole timeout) stalls them all;
- the view's lookups not thread-sensitive: Django's own thread-sensitive calls (the
  `request_started` receivers, `response.close`) would still create the per-request
  thread, and under the test client the lookups would leave the test's transaction.

Once the view has answered with an `EventStreamResponse`, the request is finished (its
response closed, `request_finished` sent) and the events are written from the
connection's own task, with one more waiting for the client to leave. Django's handler
would keep the request and the response for the stream's whole life, with two tasks of
its own and a wrapper generator between the events and the connection: about 15 KiB of
every idle stream (25 KiB in all, in process, against 10 KiB now), and more steps on
every event (bench/streams.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import aclosing, contextmanager
from typing import IO

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware as DjangoAuthentication
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSession
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import get_script_prefix
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import set_script_prefix
from django.utils.cache import patch_vary_headers

from portal.api_handler import ApiASGIHandler, InlineHooksMixin

# inference.api.urls: "predictions/<str:prediction_id>/stream" under "api/v1/".
STREAM_PATH = re.compile(r"/api/v1/predictions/[^/]+/stream")
STREAM_URLCONF = "portal.stream_urls"

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class EventStreamResponse(StreamingHttpResponse):
    """A `text/event-stream` of `events` (encoded Server-Sent Events). Under the stream
    handler its events go straight to the connection; anywhere else (Django's handler,
    the test client) it streams like any StreamingHttpResponse."""

    def __init__(self, events: AsyncIterator[bytes]) -> None:
        super().__init__(events, content_type="text/event-stream")
        self.events = events
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # proxies must not hold events back


class ReadOnlySessionMiddleware(InlineHooksMixin, DjangoSession):
    """Django's SessionMiddleware that never saves the session.

    The stream route reads the session (who is signed in, in which org) and never writes
    it, so Django's save (with its cookie refresh) could only ever be a database write
    here: on the event loop it would block every stream of the process, in a thread it
    would be a hop per stream open for nothing. The one change Django itself may make
    while reading (auth rotating a session's hash after a SECRET_KEY change) is made again
    by the next page the browser loads. Opening the session only builds the store; it
    loads on first read, in the view's thread."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if request.session.accessed:
            patch_vary_headers(response, ("Cookie",))
        return response


class AuthenticationMiddleware(InlineHooksMixin, DjangoAuthentication):
    """Django's AuthenticationMiddleware, its hook inline: it only sets a lazy
    `request.user`, loaded on first use in the view's thread."""


class StreamASGIHandler(ApiASGIHandler):
    """settings.STREAM_MIDDLEWARE on the event loop, and each request's thread-sensitive
    code on one of settings.STREAM_SYNC_THREADS shared threads (see the module's doc)."""

    middleware_setting = "STREAM_MIDDLEWARE"

    def __init__(self) -> None:
        super().__init__()
        # Threads start on first use and live as long as the process.
        executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-sync")
            for _ in range(settings.STREAM_SYNC_THREADS)
        ]
        self._executors = itertools.cycle(executors)

    @contextmanager
    def request_executor(self) -> Iterator[Executor]:
        """One of the shared threads, in turn: an idle stream holds none."""
        yield next(self._executors)

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        """Django's handling of the request, then the events of an event stream written
        with the request already finished (see the module's doc).

        The request is handled in a task and context of its own: what Django leaves in
        context variables (asgiref's Locals: the URLconf, the script prefix; the request's
        thread-sensitive context) ends with it instead of living as long as the stream."""
        responding = self._respond(scope, receive, send)
        events = await asyncio.create_task(responding, context=contextvars.copy_context())
        if events is not None:
            await write_events(events, receive, send)

    async def _respond(
        self, scope: dict, receive: Receive, send: Send
    ) -> AsyncIterator[bytes] | None:
        with self.request_executor() as executor:
            async with ThreadSensitiveContext(executor=executor):
                return await self._handle(scope, receive, send)

    async def _handle(
        self, scope: dict, receive: Receive, send: Send
    ) -> AsyncIterator[bytes] | None:
        """Answers the request as Django's handler does, but of an event stream sends only
        the start of the response and answers its events; nothing else of the request
        outlives this call."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return None
        set_script_prefix(get_script_prefix(scope))
        await signals.request_started.asend(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = await self.run_get_response(request)
        body_file.close()
        events = None
        if isinstance(response, EventStreamResponse):
            events = response.events
            await send(_start_message(response))
        else:
            await self.send_response(response, send)
        # request_finished: the request's database connection goes back now.
        await sync_to_async(response.close)()
        return events

    def create_request(
        self, scope: dict, body_file: IO[bytes]
    ) -> tuple[HttpRequest | None, HttpResponse | None]:
        """Django's request, resolved against the stream route alone (portal.stream_urls)."""
        request, error_response = super().create_request(scope, body_file)
        if request is not None:
            request.urlconf = STREAM_URLCONF
        return request, error_response


def _start_message(response: HttpResponse) -> dict:
    """The `http.response.start` of `response`, its headers and cookies encoded as
    Django's ASGI handler encodes them."""
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
    headers += [
        (b"Set-Cookie", cookie.output(header="").encode("ascii").strip())
        for cookie in response.cookies.values()
    ]
    return {"type": "http.response.start", "status": response.status_code, "headers": headers}


async def write_events(events: AsyncIterator[bytes], receive: Receive, send: Send) -> None:
    """Writes `events` to the connection until they end or the client leaves.

    The server drops what is sent after the client left, so a second task waits for
    that (`receive` answers only then) and cancels this one: the events' own cleanup
    (the watcher left, the stream slot given back) runs at once, as when Django's handler
    cancels a view whose client left.

    Code on the events' way may swallow that cancellation: on Python 3.11
    `asyncio.wait_for` (in redis-py's socket writes) returns its result instead when what
    it waited for finished in the same turn. So the writer also looks before every chunk,
    and a stream whose cancellation was lost ends at its next event or keep-alive, instead
    of writing to nobody with its slot held for as long as the process lives."""
    writer = asyncio.current_task()
    client_left = False

    def cancel_writer(_: asyncio.Future) -> None:
        nonlocal client_left
        client_left = True
        writer.cancel()

    disconnect = asyncio.ensure_future(receive())
    disconnect.add_done_callback(cancel_writer)
    try:
        async with aclosing(events):
            async for chunk in events:
                if client_left:
                    raise asyncio.CancelledError  # ours, swallowed on the events' way
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body"})
    except asyncio.CancelledError:
        if not client_left or writer.uncancel() > 0:
            raise
    finally:
        disconnect.remove_done_callback(cancel_writer)
        disconnect.cancel()


def is_stream_scope(scope: dict) -> bool:
    return scope["type"] == "http" and STREAM_PATH.fullmatch(scope["path"]) is not None
