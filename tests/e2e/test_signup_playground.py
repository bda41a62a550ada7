"""A newcomer signs up, verifies the e-mail address, finds SmolLM2 in the catalog and runs
it in the playground: the answer streams in token by token, and a second run is canceled
mid-stream."""

from __future__ import annotations

import itertools

import pytest
from playwright.sync_api import Page, expect

from inference.models import Prediction, Status
from portal.models import Organization
from tests.conftest import PASSWORD
from tests.e2e.conftest import GENERATION_CAP, SMOLLM2, MailLog, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
EMAIL = "newcomer@example.com"
# The first run on a worker process may load the model from disk.
RUN_TIMEOUT_MS = 180_000

# The thread's replies: each keeps the text streamed so far in data-raw (it shows it as
# Markdown, whose rendered text need not grow one token at a time).
REPLY = "#playground-output .message-assistant"
# Records every text the newest reply holds, with the status shown at that moment.
RECORD_OUTPUT_JS = """() => {
  const output = document.getElementById("playground-output");
  const status = document.getElementById("playground-status");
  window.e2eOutputs = [];
  new MutationObserver(() => {
    const replies = output.querySelectorAll(".message-assistant");
    const last = replies[replies.length - 1];
    if (last) window.e2eOutputs.push({text: last.dataset.raw || "", status: status.textContent});
  }).observe(output, {
    childList: true, subtree: true, attributes: true, attributeFilter: ["data-raw"],
  });
}"""


def sign_up_and_verify(page: Page, mail_log: MailLog) -> None:
    page.goto("/accounts/signup/")
    screenshot(page, "signup")
    page.fill("#id_email", EMAIL)
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page.locator("h1")).to_have_text("Confirm your e-mail address")
    page.goto(mail_log.link_to(EMAIL, "/accounts/confirm-email/"))
    page.locator("main form button[type=submit]").click()
    # Confirming logs the new user in (ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION).
    page.wait_for_url("**/dashboard/")


def run_playground(page: Page, prompt: str, max_new_tokens: int) -> None:
    page.fill("#pg-prompt", prompt)
    page.fill("#pg-max_new_tokens", str(max_new_tokens))
    advanced = page.locator("#playground-advanced")
    if advanced.get_attribute("open") is None:
        advanced.locator("summary").click()
    page.fill("#pg-seed", "7")
    page.click("#playground-run")


@pytest.mark.timeout(300)
def test_sign_up_then_stream_and_cancel_in_the_playground(page, live, mail_log, catalog):
    page.goto("/")
    screenshot(page, "landing")
    sign_up_and_verify(page, mail_log)

    personal = Organization.objects.get(memberships__user__email=EMAIL)
    assert personal.is_personal
    expect(page.locator("main h1")).to_have_text(personal.name)
    expect(page.locator("main")).to_contain_text("your personal workspace")

    page.click("nav >> text=Models")
    expect(page.locator(".model-card h2 a")).to_have_count(len(catalog))
    screenshot(page, "catalog")
    page.click("text=SmolLM2 135M Instruct")
    page.wait_for_url(f"**/models/{SMOLLM2}/")
    expect(page.locator("#playground-status")).to_have_text("idle")
    # A chat: the composer holds the example's message; the sliders lead the settings,
    # whatever order the database keeps the schema in.
    expect(page.locator("#pg-prompt")).not_to_be_empty()
    expect(page.locator("#playground-fields input").first).to_have_id("pg-max_new_tokens")

    # First run: the answer appears token by token, then the run succeeds.
    page.evaluate(RECORD_OUTPUT_JS)
    run_playground(page, "Name three colors of the rainbow.", max_new_tokens=24)
    expect(page.locator("#playground-status")).to_have_class(
        "status status-succeeded", timeout=RUN_TIMEOUT_MS
    )
    final = page.locator(REPLY).last.get_attribute("data-raw")
    streamed = [
        r["text"]
        for r in page.evaluate("window.e2eOutputs")
        if r["status"] != "succeeded" and r["text"]
    ]
    distinct = list(dict.fromkeys(streamed))
    assert len(distinct) >= 3, distinct
    # Each update extends the previous text: deltas are appended, never replaced.
    assert all(b.startswith(a) for a, b in itertools.pairwise(distinct))
    assert final.startswith(distinct[-1]) and final.strip()
    expect(page.locator("#playground-metrics")).to_contain_text("out tokens")
    first = Prediction.objects.get(org=personal)
    assert (first.status, first.output) == (Status.SUCCEEDED, final)
    screenshot(page, "model-playground")

    # Second run: canceled while tokens are still streaming.
    run_playground(page, "Count from 1 to 500, separated by commas.", GENERATION_CAP)
    # An expect, not wait_for_function: that evals its text in the page, which the CSP refuses.
    expect(page.locator(f"{REPLY} .message-body").last).not_to_be_empty(timeout=RUN_TIMEOUT_MS)
    page.click("#playground-cancel")
    expect(page.locator("#playground-status")).to_have_class(
        "status status-canceled", timeout=60_000
    )
    second = Prediction.objects.exclude(pk=first.pk).get(org=personal)
    assert second.status == Status.CANCELED
    assert second.output_tokens < GENERATION_CAP
