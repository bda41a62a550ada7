"""The newcomer's journey on a phone (390 px, touch), in one walk through the menu: the
catalog's Try, a multi-turn chat rendered as Markdown with regenerate, embeddings with
their similarity matrix, the prediction it made and "Open in playground" from it, and a
new token copied once without a second one on reload. No page it opens is wider than the
screen. The desktop walk is the other e2e modules'; the pages' own checks live there."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from inference.models import Prediction
from tests.e2e.conftest import log_in, screenshot
from tests.e2e.test_mobile import OVERFLOW_JS, PHONE, PHONE_CONTEXT
from tests.e2e.test_playground import (
    MESSAGES,
    REPLIES,
    RUN_TIMEOUT_MS,
    echo_page,
    latest,
    send,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
MARKDOWN_MESSAGE = "Here is **bold** and a list:\n\n1. first\n2. second"


def fits(page: Page, name: str) -> None:
    screenshot(page, f"phone-journey-{name}")
    fit = page.evaluate(OVERFLOW_JS, PHONE["width"])
    assert fit["scrollWidth"] <= PHONE["width"] and not fit["wide"], (name, fit)


def go_by_menu(page: Page, link: str) -> None:
    page.get_by_role("button", name="Menu").click()
    page.locator("#site-menu nav a", has_text=link).first.click()


@pytest.mark.timeout(420)
def test_a_newcomers_journey_on_a_phone(new_context, live, owner, catalog):
    page = new_context(**PHONE_CONTEXT, permissions=["clipboard-read", "clipboard-write"])
    page = page.new_page()
    log_in(page, owner.email)

    go_by_menu(page, "Models")
    page.wait_for_url("**/models/")
    fits(page, "catalog")
    card = page.locator(".model-card").first
    slug = card.get_attribute("data-model")
    card.locator("a.try").click()
    page.wait_for_url(re.compile(rf"/models/{slug}/#playground$"))
    expect(page.locator("#playground-run")).to_be_visible()
    fits(page, "model")

    # A chat: the whole thread goes to the model, the reply renders as Markdown.
    echo_page(page)
    send(page, MARKDOWN_MESSAGE)
    reply = page.locator(f"{REPLIES} .message-body").last
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply.locator("ol > li")).to_have_count(2)
    send(page, "and a second message")
    expect(page.locator(MESSAGES)).to_have_count(4)
    second = latest(model__slug="echo")
    assert [m["role"] for m in second.input["messages"]] == ["user", "assistant", "user"]
    page.click("#playground-regenerate")
    expect(page.locator("#playground-link")).not_to_have_attribute(
        "href", f"/predictions/{second.id}/"
    )
    wait_for(page, "succeeded")
    expect(page.locator(MESSAGES)).to_have_count(4)
    fits(page, "chat")

    # Embeddings: several texts, a similarity matrix that fits the screen.
    page.goto("/models/all-minilm-l6-v2/")
    page.click("#playground-run")
    wait_for(page, "succeeded", RUN_TIMEOUT_MS)
    expect(page.locator(".similarity td.sim")).to_have_count(4)
    fits(page, "embeddings")

    # The chat's prediction, then back to the playground with its inputs.
    go_by_menu(page, "Predictions")
    page.wait_for_url("**/predictions/")
    fits(page, "predictions")
    chat = Prediction.objects.filter(model__slug="echo").latest("created_at")
    page.locator(f'a[href="/predictions/{chat.id}/"]').click()
    expect(page.locator("#open-in-playground")).to_be_visible()
    fits(page, "prediction")
    page.click("#open-in-playground")
    page.wait_for_url(re.compile(rf"/models/echo/\?from={chat.id}#playground$"))
    expect(page.locator("#pg-prompt")).to_have_value("and a second message")
    expect(page.locator(MESSAGES)).to_have_count(2)
    fits(page, "tweak")

    # A token: shown once, copied, not issued again by a reload.
    go_by_menu(page, "API tokens")
    page.fill("#id_name", "phone")
    page.locator("main form button", has_text="Create token").click()
    secret = page.locator("#new-token").text_content().strip()
    page.locator(".secret button.copy[data-target=new-token]").click()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    fits(page, "token-created")
    page.reload()
    expect(page.locator("#new-token")).to_have_count(0)
    expect(page.locator("tbody tr", has_text="phone")).to_have_count(1)
