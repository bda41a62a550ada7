from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from portal.auth import SESSION_ORG_KEY, Principal, resolve_bearer, resolve_session
from portal.errors import AuthenticationFailed


class TokenUser(AnonymousUser):
    """Stands in for a token whose creator account was deleted: authenticated, no user row."""

    @property
    def is_authenticated(self) -> bool:
        return True


class BearerTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[object, Principal] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        try:
            principal = resolve_bearer(header)
        except AuthenticationFailed as exc:
            raise exceptions.AuthenticationFailed(exc.message) from exc
        if principal is None:
            return None
        return (principal.user or TokenUser(), principal)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class OrgSessionAuthentication(authentication.SessionAuthentication):
    """The browser's session (with CSRF), acting in the org the user has switched to."""

    def authenticate(self, request: Request) -> tuple[object, Principal] | None:
        result = super().authenticate(request)
        if result is None:
            return None
        user = result[0]
        principal = resolve_session(user, request._request.session.get(SESSION_ORG_KEY))
        if principal is None:
            return None
        return (user, principal)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "mp_<prefix>_<secret>",
            "description": "An API token from the portal's API tokens page.",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = OrgSessionAuthentication
    name = "cookieAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
