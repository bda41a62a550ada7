"""Per-client-IP request limit, ahead of sessions, authentication and views.

Tokens and users have their own limits (inference.admission); this one bounds what a
single address can make us do before we know who it is: token guessing, anonymous
scraping of the catalog, floods of log-in pages.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from portal import ratelimit
from portal.middleware import BothModesMiddleware, error_body, is_api_path


def rate_limited_response(request: HttpRequest, retry_after: int) -> HttpResponse:
    """API.md's 429: the error body on API paths, plain text on pages; Retry-After on both."""
    message = "Too many requests from your address; retry after the Retry-After seconds."
    if is_api_path(request.path):
        body = error_body("rate_limit_error", "ip_rate_limited", message)
        response: HttpResponse = JsonResponse(body, status=429)
    else:
        response = HttpResponse(message, status=429, content_type="text/plain")
    response["Retry-After"] = str(retry_after)
    return response


class ClientIpRateLimitMiddleware(BothModesMiddleware):
    """On the event loop (the /v1 and event-stream chains) it counts with the async Redis
    client instead of a thread hop."""

    def sync_call(self, request: HttpRequest) -> HttpResponse:
        if request.path not in settings.IP_RATE_LIMIT_EXEMPT_PATHS:
            retry_after = ratelimit.hit_ip(request)
            if retry_after is not None:
                return rate_limited_response(request, retry_after)
        return self.get_response(request)

    async def async_call(self, request: HttpRequest) -> HttpResponse:
        if request.path not in settings.IP_RATE_LIMIT_EXEMPT_PATHS:
            retry_after = await ratelimit.ahit_ip(request)
            if retry_after is not None:
                return rate_limited_response(request, retry_after)
        return await self.get_response(request)
