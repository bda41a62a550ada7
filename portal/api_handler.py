"""The ASGI handler for the OpenAI-compatible `/v1/` API: Django's request handling with
a short middleware chain that runs on the event loop.

The site's chain (sessions, CSRF, messages, allauth, the current org) is sync middleware.
Under it every async /v1 view paid thread hops: into a thread for the chain, back to the
event loop for the view, and out again for CSRF's `process_view`. /v1 authenticates by
bearer token only, never reads a session and never renders HTML, so its chain keeps
only the middleware that applies to it (settings.API_MIDDLEWARE), each running on the
loop. asgi.py sends `/v1/` here and everything else to Django's own handler.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction
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


class ApiASGIHandler(ASGIHandler):
    """Django's ASGI handler with the chain named by `middleware_setting`
    (settings.API_MIDDLEWARE here).

    Every middleware there must be async-capable: the chain is built without Django's
    sync/async adaptation, so a sync one is refused at start instead of silently adding
    the thread hops this handler exists to remove.
    """

    middleware_setting = "API_MIDDLEWARE"

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
