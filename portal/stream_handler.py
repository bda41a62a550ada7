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
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import IO

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware as DjangoAuthentication
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSession
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from portal.api_handler import ApiASGIHandler, InlineHooksMixin

# inference.api.urls: "predictions/<str:prediction_id>/stream" under "api/v1/".
STREAM_PATH = re.compile(r"/api/v1/predictions/[^/]+/stream")
STREAM_URLCONF = "portal.stream_urls"


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

    def create_request(
        self, scope: dict, body_file: IO[bytes]
    ) -> tuple[HttpRequest | None, HttpResponse | None]:
        """Django's request, resolved against the stream route alone (portal.stream_urls)."""
        request, error_response = super().create_request(scope, body_file)
        if request is not None:
            request.urlconf = STREAM_URLCONF
        return request, error_response


def is_stream_scope(scope: dict) -> bool:
    return scope["type"] == "http" and STREAM_PATH.fullmatch(scope["path"]) is not None
