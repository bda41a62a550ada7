"""Renders every API error as `{"error": {"type","code","message","param"}}` (API.md)."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from portal.errors import PortalError, RateLimited
from portal.middleware import error_body

logger = logging.getLogger(__name__)

DRF_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "not_authenticated"),
    403: ("permission_error", "forbidden"),
    404: ("not_found_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    406: ("invalid_request_error", "not_acceptable"),
    413: ("invalid_request_error", "body_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limited"),
}


def _first_field_error(detail, path: str = "") -> tuple[str | None, str]:
    """Flattens DRF's nested validation detail to the first (field, message) pair."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            field = key if key != "non_field_errors" else ""
            param, message = _first_field_error(value, f"{path}.{field}" if path else field)
            return param, message
    if isinstance(detail, list) and detail:
        return _first_field_error(detail[0], path)
    return (path or None), str(detail)


def portal_error_response(exc: PortalError) -> Response:
    response = Response(error_body(exc.type, exc.code, exc.message, exc.param), status=exc.status)
    if isinstance(exc, RateLimited):
        response["Retry-After"] = str(exc.retry_after)
    return response


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, PortalError):
        return portal_error_response(exc)
    if isinstance(exc, RequestDataTooBig):
        exc = exceptions.APIException()
        exc.status_code = 413
        exc.detail = "The request body is too large."
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled API error", exc_info=exc)
        return Response(
            error_body("api_error", "internal_error", "Something went wrong on our side."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    type_, code = DRF_TYPES.get(response.status_code, ("invalid_request_error", "error"))
    if isinstance(exc, exceptions.ParseError):
        code = "malformed_json"
    if isinstance(exc, exceptions.ValidationError):
        param, message = _first_field_error(exc.detail)
        message = f"{param}: {message}" if param else message
    else:
        param, message = None, str(getattr(exc, "detail", "Error"))
    response.data = error_body(type_, code, message, param)
    return response
