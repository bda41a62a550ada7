"""At phone width the main pages fit the screen: nothing scrolls sideways."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.e2e.conftest import SMOLLM2, log_in, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PHONE = {"width": 390, "height": 844}
PUBLIC_PAGES = {
    "landing": "/",
    "catalog": "/models/",
    "model": f"/models/{SMOLLM2}/",
    "pricing": "/pricing/",
}
MEMBER_PAGES = {
    "dashboard": "/dashboard/",
    "model-playground": f"/models/{SMOLLM2}/",
    "tokens": "/org/tokens/",
    "members": "/org/members/",
    "usage": "/billing/usage/",
    "billing": "/billing/",
}

# Compared with the phone's width, not innerWidth: mobile Chrome widens the layout
# viewport (and innerWidth with it) to fit content that overflows.
OVERFLOW_JS = """(width) => {
  const wide = [...document.querySelectorAll("body *")]
    .filter((el) => el.getBoundingClientRect().right > width + 1)
    .map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
                 (el.className && typeof el.className === "string" ? "." + el.className : ""));
  return {scrollWidth: document.scrollingElement.scrollWidth, width, wide: wide.slice(0, 10)};
}"""


def overflow(page: Page, path: str, name: str) -> dict | None:
    """What sticks out of the phone's screen on the page at `path`; None if nothing."""
    page.goto(path)
    screenshot(page, f"mobile-{name}")
    fit = page.evaluate(OVERFLOW_JS, PHONE["width"])
    return fit if fit["scrollWidth"] > PHONE["width"] else None


@pytest.mark.timeout(180)
def test_main_pages_fit_a_phone_screen(new_context, owner, catalog):
    phone = {"viewport": PHONE, "is_mobile": True, "has_touch": True}
    anonymous = new_context(**phone).new_page()
    found = {path: overflow(anonymous, path, name) for name, path in PUBLIC_PAGES.items()}
    member = new_context(**phone).new_page()
    log_in(member, owner.email)
    found |= {path: overflow(member, path, name) for name, path in MEMBER_PAGES.items()}
    assert {path: fit for path, fit in found.items() if fit} == {}
