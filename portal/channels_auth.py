"""Channels middleware: the same principal resolution as the REST API, for WebSockets."""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

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


class BrowserOriginValidator:
    """Browsers always send Origin, so a cookie-authenticated socket must come from this
    site's own origin: scheme, host and port, as Django's CSRF check compares them for a
    form (another port on the same host is another site). A client without Origin (not a
    browser) is let through only with a bearer token, which a cross-site page cannot attach.
    """

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        origin = _header(scope, b"origin")
        if origin is None:
            allowed = _bearer_present(dict(scope.get("headers", [])))
        else:
            allowed = origin_allowed(origin, scope)
        if allowed:
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)


def _bearer_present(headers: dict[bytes, bytes]) -> bool:
    return headers.get(b"authorization", b"").lower().startswith(b"bearer ")


DEFAULT_PORTS = {"http": 80, "https": 443}


def _normalized(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the scheme's default port filled in; None if malformed
    (an opaque "null" origin included)."""
    parts = urlsplit(origin)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def _is_secure(scope: dict) -> bool:
    """Like HttpRequest.scheme: a TLS-terminating proxy's header counts only where settings
    name it (they do only when TRUSTED_PROXY_COUNT says a proxy of ours is in front)."""
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        name = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        value = _header(scope, name)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "wss"


def site_origin(scope: dict) -> str | None:
    """The origin the browser had to be on to open this socket: the Host it connected to
    (one of ALLOWED_HOSTS, else none: DNS rebinding) with the scheme it connected with."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return f"{'https' if _is_secure(scope) else 'http'}://{host}"


def origin_allowed(origin: str, scope: dict) -> bool:
    given = _normalized(origin)
    if given is None:
        return False
    expected = [site_origin(scope), *settings.CSRF_TRUSTED_ORIGINS]
    return any(given == _normalized(candidate) for candidate in expected if candidate)
