"""At phone width every page fits the screen (nothing scrolls sideways), the header's
links fold behind a Menu button, and stacked tables keep their column labels."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from portal import services
from portal.models import Role
from tests.conftest import make_user
from tests.e2e.conftest import SMOLLM2, csrf_headers, log_in, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PHONE = {"width": 390, "height": 844}
PHONE_CONTEXT = {"viewport": PHONE, "is_mobile": True, "has_touch": True}
PUBLIC_PAGES = {
    "landing": "/",
    "catalog": "/models/",
    "model": f"/models/{SMOLLM2}/",
    "pricing": "/pricing/",
    "quickstart-anonymous": "/docs/quickstart/",
    "login": "/accounts/login/",
    "signup": "/accounts/signup/",
    "password-reset": "/accounts/password/reset/",
    "password-reset-done": "/accounts/password/reset/done/",
}
# What the team org's owner opens: every page in the header and the pages they link to.
OWNER_PAGES = {
    "dashboard": "/dashboard/",
    "model-playground": f"/models/{SMOLLM2}/",
    "predictions": "/predictions/",
    "tokens": "/org/tokens/",
    "members": "/org/members/",
    "settings": "/org/settings/",
    "audit-log": "/org/audit/",
    "orgs": "/orgs/",
    "usage": "/billing/usage/",
    "billing": "/billing/",
    "quickstart": "/docs/quickstart/",
    "publisher": "/publisher/",
    "publisher-listings": "/publisher/listings/",
    "publisher-analytics": "/publisher/analytics/",
    "publish": "/models/publish/",
    "email-addresses": "/accounts/email/",
    "logout-confirm": "/accounts/logout/",
}
# A plain member of the same org: the pages the header offers to members.
MEMBER_PAGES = {
    "member-dashboard": "/dashboard/",
    "member-predictions": "/predictions/",
    "member-members": "/org/members/",
    "member-usage": "/billing/usage/",
    "member-billing": "/billing/",
    "member-orgs": "/orgs/",
}

# Compared with the phone's width, not innerWidth: mobile Chrome widens the layout
# viewport (and innerWidth with it) to fit content that overflows. An element past the
# right edge counts even when an ancestor's overflow: hidden keeps the page from
# scrolling (it is cut off, not fitted); only one inside a box that scrolls sideways
# itself (code blocks) is allowed.
OVERFLOW_JS = """(width) => {
  const scrolls = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  const insideScroller = (el) => {
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (scrolls(up)) return true;
    }
    return false;
  };
  const wide = [...document.querySelectorAll("body *")]
    .filter((el) => {
      const box = el.getBoundingClientRect();
      return box.width > 1 && box.right > width + 1 && !insideScroller(el);
    })
    .map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
                 (el.className && typeof el.className === "string" ? "." + el.className : ""));
  return {scrollWidth: document.scrollingElement.scrollWidth, width, wide: wide.slice(0, 10)};
}"""


def overflow(page: Page, path: str, name: str) -> dict | None:
    """What sticks out of the phone's screen on the page at `path`; None if nothing.
    A page that fails to open is reported too, so that a redirect to the log-in page
    is never measured in its place."""
    response = page.goto(path)
    if (
        response is None
        or not response.ok
        or page.url.endswith("/accounts/login/") != (path == "/accounts/login/")
    ):
        return {"status": response.status if response else None, "url": page.url}
    screenshot(page, f"mobile-{name}")
    fit = page.evaluate(OVERFLOW_JS, PHONE["width"])
    return fit if fit["scrollWidth"] > PHONE["width"] or fit["wide"] else None


def switch_org(context: BrowserContext, page: Page, slug: str) -> None:
    response = page.request.post("/orgs/switch/", form={"org": slug}, headers=csrf_headers(context))
    assert response.ok, response.status


@pytest.fixture
def busy_org(org, owner):
    """The team org with something in every table (members, a token, audit entries), and
    the long unbroken words that push a phone's page wider than its screen."""
    long_email = "data-science-platform-notifications@research-division.example.com"
    org.memberships.create(user=make_user(long_email), role=Role.ADMIN)
    services.issue_token(org, owner, "ci-deploy-token-for-the-nightly-evaluation-pipeline")
    return org


@pytest.mark.timeout(300)
def test_every_page_fits_a_phone_screen(new_context, owner, teammate, busy_org, catalog):
    anonymous = new_context(**PHONE_CONTEXT).new_page()
    found = {path: overflow(anonymous, path, name) for name, path in PUBLIC_PAGES.items()}

    owner_context = new_context(**PHONE_CONTEXT)
    owner_page = owner_context.new_page()
    log_in(owner_page, owner.email)
    switch_org(owner_context, owner_page, busy_org.slug)
    found |= {
        f"owner {path}": overflow(owner_page, path, name) for name, path in OWNER_PAGES.items()
    }

    member_context = new_context(**PHONE_CONTEXT)
    member_page = member_context.new_page()
    log_in(member_page, teammate.email)
    switch_org(member_context, member_page, busy_org.slug)
    found |= {
        f"member {path}": overflow(member_page, path, name) for name, path in MEMBER_PAGES.items()
    }
    assert {path: fit for path, fit in found.items() if fit} == {}


def test_the_menu_button_opens_and_closes_the_links_on_a_phone(new_context, owner, catalog):
    page = new_context(**PHONE_CONTEXT).new_page()
    log_in(page, owner.email)
    button = page.get_by_role("button", name="Menu")
    members = page.locator("#site-menu nav a", has_text="Members")
    expect(button).to_be_visible()
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(button).to_have_attribute("aria-controls", "site-menu")
    expect(members).to_be_hidden()
    expect(page.get_by_role("button", name="Log out")).to_be_hidden()

    button.click()
    expect(button).to_have_attribute("aria-expanded", "true")
    expect(members).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    screenshot(page, "mobile-menu-open")

    button.click()
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(members).to_be_hidden()

    # Escape closes an open menu and leaves the focus on its button.
    button.click()
    page.keyboard.press("Escape")
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(button).to_be_focused()

    members_visible_after_navigation = page.locator("#site-menu nav a", has_text="Members")
    button.click()
    members_visible_after_navigation.click()
    page.wait_for_url("**/org/members/")
    # A stacked row names each cell with its column's heading.
    email_cell = page.locator("table.stack td[data-label='E-mail']").first
    expect(email_cell).to_be_visible()
    label = email_cell.evaluate("(cell) => getComputedStyle(cell, '::before').content")
    assert label == '"E-mail: "'


def test_desktop_shows_the_links_and_no_menu_button(page, owner, catalog):
    log_in(page, owner.email)
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    expect(page.locator("#site-menu nav a", has_text="Members")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_without_javascript_a_phone_shows_the_links(new_context, catalog):
    page = new_context(**PHONE_CONTEXT, java_script_enabled=False).new_page()
    page.goto("/")
    expect(page.locator(".menu-toggle")).to_be_hidden()
    expect(page.locator("#site-menu nav a", has_text="Models")).to_be_visible()
    expect(page.locator("#site-menu a", has_text="Log in")).to_be_visible()
