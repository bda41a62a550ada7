"""Errors that services raise and that the API renders as API.md's error body."""

from __future__ import annotations


class PortalError(Exception):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code:
            self.code = code


class InvalidInput(PortalError):
    pass


class AuthenticationFailed(PortalError):
    status = 401
    type = "authentication_error"
    code = "invalid_token"


class PaymentRequired(PortalError):
    status = 402
    type = "billing_error"
    code = "payment_required"


class NotAllowed(PortalError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(PortalError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class Conflict(PortalError):
    status = 409
    type = "conflict_error"
    code = "conflict"


class Gone(PortalError):
    """It existed and is gone for good (a retired model version): retrying will not help."""

    status = 410
    type = "invalid_request_error"
    code = "gone"


class RateLimited(PortalError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Unavailable(PortalError):
    status = 503
    type = "service_unavailable"
    code = "unavailable"
