from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.functional import SimpleLazyObject

from portal.auth import SESSION_ORG_KEY, current_membership

logger = logging.getLogger(__name__)
# Where Django itself logs a refused Host.
host_logger = logging.getLogger("django.security.DisallowedHost")
API_PREFIXES = ("/api/v1/", "/v1/")
GENERIC_ERRORS = {
    400: ("invalid_request_error", "bad_request", "The request could not be understood."),
    403: ("permission_error", "forbidden", "You do not have permission to do this."),
    404: ("not_found_error", "not_found", "Not found."),
    405: ("invalid_request_error", "method_not_allowed", "Method not allowed."),
    413: ("invalid_request_error", "body_too_large", "The request body is too large."),
    500: ("api_error", "internal_error", "Something went wrong on our side."),
}


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def error_body(type_: str, code: str, message: str, param: str | None = None) -> dict:
    return {"error": {"type": type_, "code": code, "message": message, "param": param}}


def generic_error_response(status: int) -> JsonResponse:
    type_, code, message = GENERIC_ERRORS[status]
    return JsonResponse(error_body(type_, code, message), status=status)


class BothModesMiddleware:
    """A middleware for every chain: sync in the site's, on the event loop in the lean /v1
    and event-stream chains (portal.api_handler), with no thread hop there. A subclass
    writes its hook twice, `sync_call` and `async_call`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if iscoroutinefunction(self):
            return self.async_call(request)
        return self.sync_call(request)

    def sync_call(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError

    async def async_call(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError


class AllowedHostsMiddleware(BothModesMiddleware):
    """Refuses a Host that settings.ALLOWED_HOSTS does not name, on every route.

    Django checks the Host only when something asks for it (CommonMiddleware, CSRF, an
    absolute URL). The /v1 and event-stream chains have none of those, so they answered
    any Host: a DNS-rebinding page or a cache in front keyed on the Host reached the
    views. An API path gets the API's JSON 400; a page, Django's own 400."""

    def sync_call(self, request: HttpRequest) -> HttpResponse:
        return _host_refusal(request) or self.get_response(request)

    async def async_call(self, request: HttpRequest) -> HttpResponse:
        return _host_refusal(request) or await self.get_response(request)


def _host_refusal(request: HttpRequest) -> HttpResponse | None:
    """The API's 400 for a Host not served here; raises Django's DisallowedHost (its 400
    page, and its security log) on a page."""
    try:
        request.get_host()
    except DisallowedHost as refused:
        if not is_api_path(request.path):
            raise
        host_logger.error(refused)
        return generic_error_response(400)
    return None


class CurrentOrgMiddleware:
    """`request.membership` / `request.org`: the org the signed-in user is working in."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        def membership():
            return current_membership(request.user, request.session.get(SESSION_ORG_KEY))

        request.membership = SimpleLazyObject(membership)
        request.org = SimpleLazyObject(lambda: request.membership and request.membership.org)
        return self.get_response(request)


class ApiErrorPagesMiddleware(BothModesMiddleware):
    """API paths never answer HTML: Django's own 404/405/500 pages become JSON errors."""

    def sync_call(self, request: HttpRequest) -> HttpResponse:
        return _as_api_error(request, self.get_response(request))

    async def async_call(self, request: HttpRequest) -> HttpResponse:
        return _as_api_error(request, await self.get_response(request))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request.path):
            return None
        logger.exception("Unhandled error on %s", request.path, exc_info=exception)
        return generic_error_response(500)


def _as_api_error(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Django's HTML error page for an API path, replaced by the API's JSON error."""
    if not is_api_path(request.path) or response.status_code not in GENERIC_ERRORS:
        return response
    if response.get("Content-Type", "").startswith(("application/json", "text/event-stream")):
        return response
    replacement = generic_error_response(response.status_code)
    if response.has_header("Allow"):
        replacement["Allow"] = response["Allow"]
    return replacement
