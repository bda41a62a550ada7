"""`/metrics` and the HTTP latency middleware that feeds it (see portal/metrics.py)."""

from __future__ import annotations

import hmac
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from portal import metrics
from portal.middleware import BothModesMiddleware

UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class RequestMetricsMiddleware(BothModesMiddleware):
    """Records time to the response's headers by route pattern (never the raw path, which
    would make one series per prediction id)."""

    def sync_call(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        _record(request, response, time.perf_counter() - started)
        return response

    async def async_call(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = await self.get_response(request)
        _record(request, response, time.perf_counter() - started)
        return response


def _record(request: HttpRequest, response: HttpResponse, seconds: float) -> None:
    match = getattr(request, "resolver_match", None)
    labels = {
        "route": "/" + match.route if match and match.route else UNMATCHED_ROUTE,
        "method": request.method if request.method in KNOWN_METHODS else "other",
        "status": f"{response.status_code // 100}xx",
    }
    metrics.observe("portal_http_request_duration_seconds", labels, seconds)


def _may_scrape(request: HttpRequest) -> bool:
    if settings.DEBUG:
        return True
    if getattr(request.user, "is_staff", False):
        return True
    token = settings.METRICS_TOKEN
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return bool(token) and hmac.compare_digest(offered.encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _may_scrape(request):
        return HttpResponse(
            "Send 'Authorization: Bearer <METRICS_TOKEN>' or sign in as staff.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4")
