"""The ASGI handler for the OpenAI-compatible `/v1/` API: Django's request handling with
a short middleware chain that runs on the event loop.

The site's chain (sessions, CSRF, messages, allauth, the current org) is sync middleware.
Under it every async /v1 view paid thread hops: into a thread for the chain, back to the
event loop for the view, and out again for CSRF's `process_view`. /v1 authenticates by
bearer token only, never reads a session and never renders HTML, so its chain keeps
only the middleware that applies to it (settings.API_MIDDLEWARE), each running on the
loop. asgi.py sends `/v1/` here and everything else to Django's own handler.

Each request's thread-sensitive code (the token lookup, admission) runs on a thread of
its own, as under Django's handler, but a reused one: Django's handler starts a new
thread per request, and with it went everything kept per thread (Django's connection
object, Celery's producer state), rebuilt on every call. A thread is lent to one request
at a time, so a call that waits (on the org's period lock, on a database that stopped
answering) still holds up only its own request.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware as DjangoXFrameOptions
from django.middleware.security import SecurityMiddleware as DjangoSecurity
from django.utils.module_loading import import_string

API_PREFIX = "/v1/"


class InlineHooksMixin:
    """For a MiddlewareMixin whose hooks only read the request and set headers (no I/O):
    on the event loop its hooks run inline, where Django's mixin would give each its own
    thread hop."""

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class SecurityMiddleware(InlineHooksMixin, DjangoSecurity):
    """Django's SecurityMiddleware (HTTPS redirect, HSTS, nosniff, referrer and
    cross-origin opener policies), its hooks inline."""


class XFrameOptionsMiddleware(InlineHooksMixin, DjangoXFrameOptions):
    """Django's X-Frame-Options middleware, its hook inline."""


class LentThreads:
    """Single-thread executors, each lent to one request at a time; up to `keep` idle
    ones are kept for the next requests. Used from the event loop only (no lock)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._idle: list[ThreadPoolExecutor] = []

    @contextmanager
    def lent(self) -> Iterator[ThreadPoolExecutor]:
        executor = self._idle.pop() if self._idle else self._new()
        try:
            yield executor
        finally:
            if len(self._idle) < self.keep:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)

    @staticmethod
    def _new() -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-sync")


class ApiASGIHandler(ASGIHandler):
    """Django's ASGI handler with the chain named by `middleware_setting`
    (settings.API_MIDDLEWARE here).

    Every middleware there must be async-capable: the chain is built without Django's
    sync/async adaptation, so a sync one is refused at start instead of silently adding
    the thread hops this handler exists to remove.
    """

    middleware_setting = "API_MIDDLEWARE"

    def __init__(self) -> None:
        super().__init__()
        self._threads = LentThreads(keep=settings.API_IDLE_SYNC_THREADS)

    @contextmanager
    def request_executor(self) -> Iterator[Executor]:
        """The executor of one request's thread-sensitive code: a lent thread (see the
        module's doc)."""
        with self._threads.lent() as executor:
            yield executor

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        with self.request_executor() as executor:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response_async)
        name = self.middleware_setting
        for path in reversed(getattr(settings, name)):
            middleware = import_string(path)
            if not getattr(middleware, "async_capable", False):
                raise ImproperlyConfigured(f"{name}: {path} is not async-capable.")
            instance = middleware(handler)
            if not iscoroutinefunction(instance):
                raise ImproperlyConfigured(f"{name}: {path} did not run async.")
            if hasattr(instance, "process_exception"):
                # Django calls exception hooks sync (in a thread), as in its own chain.
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self._middleware_chain = handler


def is_api_scope(scope: dict) -> bool:
    return scope["type"] == "http" and scope["path"].startswith(API_PREFIX)
