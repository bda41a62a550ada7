"""Channels middleware: the same principal resolution as the REST API, for WebSockets."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings

from portal.auth import SESSION_ORG_KEY, Principal, resolve_bearer, resolve_session
from portal.errors import AuthenticationFailed


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


@database_sync_to_async
def _resolve(scope: dict) -> Principal | None:
    try:
        principal = resolve_bearer(_header(scope, b"authorization"))
    except AuthenticationFailed:
        return None
    if principal is not None:
        return principal
    user = scope.get("user")
    session = scope.get("session")
    if user is None or not user.is_authenticated or session is None:
        return None
    return resolve_session(user, session.get(SESSION_ORG_KEY))


class PrincipalMiddleware:
    """Sets `scope["principal"]` (or None); consumers refuse the socket when it is None."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        scope = dict(scope, principal=await _resolve(scope))
        return await self.inner(scope, receive, send)


def PrincipalMiddlewareStack(inner):
    return AuthMiddlewareStack(PrincipalMiddleware(inner))


class BrowserOriginValidator(OriginValidator):
    """Browsers always send Origin, so a cookie-authenticated socket must carry an allowed
    one. A client without Origin (not a browser) is let through only with a bearer token,
    which a cross-site page cannot attach."""

    def __init__(self, application):
        super().__init__(application, settings.ALLOWED_HOSTS)

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers", []))
        if b"origin" not in headers and _bearer_present(headers):
            return await self.application(scope, receive, send)
        return await super().__call__(scope, receive, send)


def _bearer_present(headers: dict[bytes, bytes]) -> bool:
    return headers.get(b"authorization", b"").lower().startswith(b"bearer ")
