"""The site works in a real browser under its Content-Security-Policy (issue #11, item 13):
an owner walks the main pages, runs the playground (HTTP + WebSocket), switches org, copies
a snippet, creates a token and reads the API reference (Swagger UI, ReDoc), and the browser
reports no violation of the policy and no script error on the way."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from portal.csp import HEADER
from tests.e2e.conftest import log_in, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Every page records the violations its policy reports, before any of its own code runs.
RECORD_VIOLATIONS_JS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(
    event.effectiveDirective + " blocked " + (event.blockedURI || "inline") +
    " at " + event.sourceFile + ":" + event.lineNumber
  );
});
"""
# Where ReDoc's bundle loads its footer logo from (never fetched: img-src is 'self').
REDOC_LOGO_CDN = "https://cdn.redoc.ly/"


class Watch:
    """Console errors and uncaught exceptions of a page, and its recorded violations."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.add_init_script(RECORD_VIOLATIONS_JS)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("response", self._response)

    def _console(self, message) -> None:
        # A failed load is reported below with its URL, which the console line lacks.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {message.text}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.errors.append(f"{response.status} {response.url}")

    def visit(self, path: str) -> None:
        response = self.page.goto(path)
        assert response is not None and response.ok, (path, response and response.status)
        policy = response.headers.get(HEADER.lower(), "")
        assert "script-src 'self'" in policy, (path, policy)

    def assert_clean(self, where: str, blocked_on_purpose: str = "") -> None:
        """No violation and no error, but those naming the URL `blocked_on_purpose`."""
        violations = self.page.evaluate("window.cspViolations || []")
        problems = [
            text for text in violations + self.errors if not _names(text, blocked_on_purpose)
        ]
        assert not problems, (where, problems)
        self.errors.clear()


def _names(text: str, url: str) -> bool:
    return bool(url) and url in text


@pytest.fixture
def watch(page) -> Watch:
    return Watch(page)


@pytest.mark.timeout(240)
def test_main_pages_work_under_the_policy(page, watch, live, owner, org, catalog):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    watch.visit("/")
    screenshot(page, "csp-landing")
    watch.assert_clean("landing")
    log_in(page, owner.email)
    watch.assert_clean("dashboard")

    watch.visit("/models/")
    expect(page.locator(".model-card h2 a")).to_have_count(len(catalog))
    watch.assert_clean("catalog")

    # The model page: the copy buttons (static/js/portal.js) and a playground run, whose
    # stream comes over the WebSocket that connect-src must allow.
    watch.visit("/models/echo/")
    copy = page.locator("#api-heading ~ .snippet button.copy").first
    copy.click()
    expect(copy).to_have_text("Copied")
    code = page.locator(f"#{copy.get_attribute('data-target')}").text_content()
    assert page.evaluate("navigator.clipboard.readText()") == code
    expect(page.locator("#playground-status")).to_have_text("idle")
    page.fill("#pg-prompt", "csp echo")
    page.click("#playground-run")
    expect(page.locator("#playground-status")).to_have_class(
        "status status-succeeded", timeout=60_000
    )
    expect(page.locator("#playground-output .message-assistant")).to_contain_text("csp echo")
    # The API tab: the call just made, highlighted by highlight.js (from npm, 'self').
    page.click("#playground-tab-api")
    expect(page.locator("#playground-code .hljs-string").first).to_be_visible()
    watch.assert_clean("model page and playground")

    # The org switcher submits on change (no inline onchange any more).
    page.select_option("#org-switch", org.slug)
    expect(page.locator("#org-switch")).to_have_value(org.slug)
    page.wait_for_load_state()
    watch.assert_clean("org switch")

    for path in ("/pricing/", "/billing/", "/predictions/"):
        watch.visit(path)
        watch.assert_clean(path)

    watch.visit("/org/tokens/")
    page.fill("#id_name", "csp token")
    page.locator("main form button", has_text="Create token").click()
    expect(page.locator("#new-token")).to_contain_text("mp_")
    watch.assert_clean("tokens")

    watch.visit("/api/docs/")
    expect(page.locator(".opblock").first).to_be_visible(timeout=30_000)
    assert page.locator(".opblock").count() > 10
    screenshot(page, "csp-swagger")
    watch.assert_clean("swagger ui")

    watch.visit("/api/redoc/")
    expect(page.locator("h1", has_text="Model Portal API")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("/v1/chat/completions").first).to_be_attached()
    screenshot(page, "csp-redoc")
    # ReDoc's "powered by" logo lives on Redocly's CDN: the policy keeps that request from
    # leaving the browser, which is what it is for (the docs work without it).
    watch.assert_clean("redoc", blocked_on_purpose=REDOC_LOGO_CDN)


def test_the_policy_reports_what_it_blocks(page, watch, live):
    """The watch above is not vacuous: an inline script on one of our pages is refused and
    reported."""
    watch.visit("/")
    directive = page.evaluate(
        """() => new Promise((resolve) => {
             document.addEventListener(
               "securitypolicyviolation", (event) => resolve(event.effectiveDirective)
             );
             const script = document.createElement("script");
             script.textContent = "window.injected = true";
             document.body.append(script);
           })"""
    )
    assert directive == "script-src-elem"
    assert page.evaluate("window.injected") is None
    assert page.evaluate("window.cspViolations")[0].startswith("script-src-elem blocked inline")
