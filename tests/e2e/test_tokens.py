"""An owner creates an API token in the browser, sees its secret exactly once (a reload
neither shows it again nor issues another), copies it, calls the API with it, confirms its
revocation in the browser, and the next call is refused."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import log_in, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
TOKEN_NAME = "e2e laptop"


def list_models(base_url: str, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{base_url}/api/v1/models", headers=headers, timeout=30)


@pytest.mark.timeout(180)
def test_token_is_shown_once_works_and_stops_working_when_revoked(
    new_context, live, owner, catalog
):
    page = new_context(permissions=["clipboard-read", "clipboard-write"]).new_page()
    log_in(page, owner.email)
    page.click("nav >> text=API tokens")
    page.fill("#id_name", TOKEN_NAME)
    page.locator("main form button", has_text="Create token").click()
    secret = page.locator("#new-token").text_content().strip()
    assert secret.startswith("mp_")
    assert page.url.endswith("/org/tokens/")  # redirected: the secret is not in the URL
    row = page.locator("tbody tr", has_text=TOKEN_NAME)
    expect(row).to_contain_text(secret.split("_")[1])  # the prefix stays listed
    page.locator(".secret button.copy[data-target=new-token]").click()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    first_call = page.locator("#first-call").text_content()
    assert "$MODEL_PORTAL_TOKEN" in first_call and secret not in first_call
    assert '"model": "echo"' not in first_call
    screenshot(page, "tokens-created")

    # Reloading the page after the POST neither shows the secret again nor issues another.
    page.reload()
    expect(page.locator("#new-token")).to_have_count(0)
    assert secret not in page.content()
    expect(page.locator("tbody tr", has_text=TOKEN_NAME)).to_have_count(1)
    screenshot(page, "tokens")

    answer = list_models(live.base_url, secret)
    assert answer.status_code == 200, answer.text
    assert {m["slug"] for m in answer.json()["results"]} >= set(catalog)

    # Revoking asks first; cancelling changes nothing.
    row.get_by_role("link", name="Revoke").click()
    expect(page.locator("h1")).to_contain_text(TOKEN_NAME)
    page.get_by_role("link", name="Cancel").click()
    assert list_models(live.base_url, secret).status_code == 200
    row.get_by_role("link", name="Revoke").click()
    screenshot(page, "token-revoke")
    page.get_by_role("button", name="Revoke token").click()
    expect(page.locator(".messages")).to_contain_text("Token revoked.")
    expect(page.locator("tbody tr", has_text=TOKEN_NAME)).to_contain_text("revoked")

    refused = list_models(live.base_url, secret)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["type"]
