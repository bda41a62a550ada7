"""Content-Security-Policy for every HTML page.

Pages carry no inline script, inline event handler or inline style (data for scripts goes
through `json_script`, which the browser does not execute), so the policy allows code and
styles from our own origin only. Whatever an attacker smuggles into a page (a model card,
an org name) cannot run, load third-party resources, be framed, or post a form elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import wraps
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"
# Where Stripe sends a customer after our server's 302 (Checkout, Customer Portal).
# Chromium applies form-action to redirects that follow a form POST, so these must be
# allowed or "Subscribe" and "Manage billing" stop at the CSP.
STRIPE_HOSTED_ORIGINS = ("https://checkout.stripe.com", "https://billing.stripe.com")


def stripe_redirect_origins() -> tuple[str, ...]:
    """A Stripe-compatible server configured in STRIPE_API_BASE hosts its own pages."""
    if settings.STRIPE_API_BASE:
        parts = urlsplit(settings.STRIPE_API_BASE)
        return (f"{parts.scheme}://{parts.netloc}",)
    return STRIPE_HOSTED_ORIGINS


def build_policy(overrides: Mapping[str, Sequence[str]] | None = None) -> str:
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        # 'self' covers ws:/wss: to this host in CSP Level 3 (the playground's socket).
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'", *stripe_redirect_origins()],
        "object-src": ["'none'"],
        **(overrides or {}),
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def is_html(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("text/html")


class ContentSecurityPolicyMiddleware:
    """Adds the policy to HTML responses; the policy is built once, settings are fixed."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        self.policy = build_policy()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if is_html(response) and HEADER not in response:
            response[HEADER] = self.policy
        return response


# ReDoc writes its styles into <style> elements as it runs (styled-components) and builds
# its search index in a worker made from a blob: URL. The page shows only our own schema,
# no user content, and scripts stay 'self' only.
REDOC_OVERRIDES = {"style-src": ["'self'", "'unsafe-inline'"], "worker-src": ["'self'", "blob:"]}


def with_policy_overrides(
    overrides: Mapping[str, Sequence[str]],
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A view's own policy: the site's with some directives replaced (a third-party page)."""
    policy = build_policy(overrides)

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            response = view(request, *args, **kwargs)
            response[HEADER] = policy
            return response

        return wrapped

    return decorator
