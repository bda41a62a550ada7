"""Defence in depth (issue #11, item 13): every HTML page carries a Content-Security-Policy
that allows only our own scripts and styles, and no page relies on inline code that such
a policy would block (an inline <script>, an on*= handler, a javascript: URL)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.http import HttpResponse
from django.test import Client

from models_hub.markdown import render_markdown
from portal.csp import HEADER, REDOC_OVERRIDES, build_policy
from tests.security.test_sweep import (  # noqa: F401 (objects is a fixture used here)
    Access,
    build_url,
    classified,
    objects,
)

pytestmark = pytest.mark.django_db

# A <script> the browser executes: without src, and not a JSON data block (json_script).
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>")
INLINE_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
JAVASCRIPT_URL = re.compile(r"(?:href|src|action)\s*=\s*[\"']?\s*javascript:", re.IGNORECASE)
INLINE_STYLE = re.compile(r"<style[\s>]|<[^>]*\sstyle\s*=", re.IGNORECASE)


@pytest.fixture(autouse=True)
def _no_ip_limit(settings):
    settings.IP_RATE_LIMIT_PER_MINUTE = 0


def inline_code(html: str) -> list[str]:
    found = []
    for pattern in (INLINE_SCRIPT, INLINE_HANDLER, JAVASCRIPT_URL, INLINE_STYLE):
        found += [match.group(0) for match in pattern.finditer(html)]
    return found


def html_pages(objects, owner, client_for) -> Iterator[tuple[str, HttpResponse]]:  # noqa: F811
    """Every classified page and public URL as its owner sees it, plus the pages a
    signed-out visitor sees (log-in, sign-up, a 404)."""
    boss = client_for(owner, objects.org)
    for route, endpoint in classified():
        if "GET" in endpoint.methods and endpoint.access in (Access.PAGE, Access.PUBLIC):
            url = build_url(route, objects.values(endpoint))
            yield url, boss.get(url)
    anonymous = Client()
    for url in ("/", "/accounts/login/", "/accounts/signup/", "/no/such/page/", "/admin/login/"):
        yield url, anonymous.get(url)


def test_every_html_page_carries_the_policy_and_no_inline_code(
    objects,  # noqa: F811
    owner,
    client_for,
):
    failures, checked = [], 0
    for url, response in html_pages(objects, owner, client_for):
        if not response.get("Content-Type", "").startswith("text/html"):
            continue
        checked += 1
        if HEADER not in response:
            failures.append(f"{url}: no {HEADER}")
            continue
        # ReDoc alone (no user content) has its own exceptions (see portal.csp).
        expected = build_policy(REDOC_OVERRIDES if url == "/api/redoc/" else None)
        if response[HEADER] != expected:
            failures.append(f"{url}: policy {response[HEADER]}")
        inline = inline_code(response.content.decode())
        if inline:
            failures.append(f"{url}: inline code {inline}")
    assert checked > 15, checked
    assert not failures, "\n".join(failures)


def test_the_policy_allows_only_our_origin(settings):
    settings.STRIPE_API_BASE = ""
    policy = dict(part.split(" ", 1) for part in build_policy().split("; "))
    assert policy == {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "connect-src": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'self'",
        "form-action": "'self' https://checkout.stripe.com https://billing.stripe.com",
        "object-src": "'none'",
    }


def test_form_action_follows_a_configured_stripe_server(settings):
    # Checkout and the Customer Portal are a 302 after our form POST: their host must be
    # allowed, and a Stripe-compatible server (localstripe, the e2e fake) hosts its own.
    settings.STRIPE_API_BASE = "http://127.0.0.1:12111/v1"
    policy = dict(part.split(" ", 1) for part in build_policy().split("; "))
    assert policy["form-action"] == "'self' http://127.0.0.1:12111"


def test_json_responses_do_not_need_the_policy(db):
    response = Client().get("/api/v1/models")
    assert response["Content-Type"].startswith("application/json")
    assert HEADER not in response


# --- Model cards ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "markdown",
    [
        "![x](https://evil.example/a.png)",
        "![x](//evil.example/a.png)",
        '<img src="http://evil.example/a.png" alt="x">',
        '<img src="HTTPS://evil.example/a.png">',
    ],
)
def test_model_cards_load_no_image_from_another_host(markdown):
    html = render_markdown(f"Look: {markdown}")
    assert "evil.example" not in html
    assert "<img" not in html
    assert "Look:" in html


@pytest.mark.parametrize(
    "markdown, src",
    [
        ("![chart](/static/img/chart.png)", "/static/img/chart.png"),
        ("![chart](chart.png)", "chart.png"),
        ("![dot](data:image/png;base64,iVBORw0KGgo=)", "data:image/png;base64,iVBORw0KGgo="),
    ],
)
def test_model_cards_keep_local_and_inline_images(markdown, src):
    assert f'src="{src}"' in render_markdown(markdown)


def test_model_cards_keep_external_links_but_not_data_links():
    html = render_markdown("[site](https://example.org/) [x](data:text/html,hi)")
    assert 'href="https://example.org/"' in html
    assert "data:text/html" not in html


def test_model_cards_keep_images_from_the_site_itself(settings):
    settings.SITE_URL = "https://portal.example.com"
    html = render_markdown(
        "![a](https://portal.example.com/static/a.png) ![b](http://portal.example.com/b.png)"
    )
    assert 'src="https://portal.example.com/static/a.png"' in html
    assert "b.png" not in html
