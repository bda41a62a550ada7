"""The model page's playground in a real browser against the live stack (issue #15): a
chat whose first Run works from the example and renders Markdown as it streams; a thread
whose whole history goes to the model, with stop, regenerate and clear; model output that
cannot run script; embeddings with a similarity matrix; a classifier's bars; an API tab
whose curl and Python run as shown; errors in words at their field; and prefill from one
of the org's own predictions (?from=), for no other org."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import transaction
from playwright.sync_api import Page, expect

from billing.checkout import grant_plan
from billing.models import Plan
from inference.models import Prediction, Status
from models_hub.models import ModelListing
from portal import services
from portal.models import Organization
from tests.e2e.conftest import SMOLLM2, log_in, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
# The first run on a worker process may load the model from disk.
RUN_TIMEOUT_MS = 180_000
ECHO_TIMEOUT_MS = 60_000
STATUS = "#playground-status"
REPLIES = "#playground-output .message-assistant"
MESSAGES = "#playground-output .message"

# Every page records what its Content-Security-Policy blocks, before its own code runs.
RECORD_VIOLATIONS_JS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.effectiveDirective + " " + (event.blockedURI || "inline"));
});
"""
# Records the HTML of the newest reply each time it changes while the run streams.
RECORD_REPLY_JS = """() => {
  const output = document.getElementById("playground-output");
  window.e2eReplies = [];
  new MutationObserver(() => {
    const replies = output.querySelectorAll(".message-assistant .message-body");
    const last = replies[replies.length - 1];
    if (last) window.e2eReplies.push(last.innerHTML);
  }).observe(output, {childList: true, characterData: true, subtree: true});
}"""


def wait_for(page: Page, status: str, timeout: int = ECHO_TIMEOUT_MS) -> None:
    expect(page.locator(STATUS)).to_have_class(f"status status-{status}", timeout=timeout)


def open_advanced(page: Page) -> None:
    fold = page.locator("#playground-advanced")
    if fold.get_attribute("open") is None:
        fold.locator("summary").click()


def echo_page(page: Page, tokens_per_second: int = 0) -> None:
    """The echo model's page, set to stream at `tokens_per_second` (0: at once)."""
    page.goto("/models/echo/")
    open_advanced(page)
    page.fill("#pg-tokens_per_second", str(tokens_per_second))


def send(page: Page, message: str, status: str = "succeeded") -> None:
    page.fill("#pg-prompt", message)
    page.click("#playground-run")
    wait_for(page, status)


def latest(**filters) -> Prediction:
    return Prediction.objects.filter(**filters).latest("created_at")


def reply_texts(page: Page) -> list[str]:
    return [text.strip() for text in page.locator(f"{REPLIES} .message-body").all_text_contents()]


# --- Chat ---------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_first_run_of_the_chat_example_streams_a_markdown_reply(page, live, owner, catalog):
    """Nothing typed: the example fills the composer and the sliders, and Run works."""
    log_in(page, owner.email)
    page.goto(f"/models/{SMOLLM2}/")
    example = catalog[SMOLLM2].example_input
    expect(page.locator("#pg-prompt")).to_have_value(example["messages"][0]["content"])
    expect(page.locator("#pg-max_new_tokens")).to_have_value(str(example["max_new_tokens"]))
    expect(page.locator("#pg-temperature")).to_have_value(str(example["temperature"]))
    # Inputs and output side by side, both in view without scrolling.
    run = page.locator("#playground-run").bounding_box()
    output = page.locator("#playground-output").bounding_box()
    system = page.locator("#pg-system").bounding_box()
    assert system["x"] + system["width"] <= output["x"], (system, output)
    assert run["y"] + run["height"] <= 900 and output["y"] < 900
    screenshot(page, "playground-chat-example")

    page.evaluate(RECORD_REPLY_JS)
    page.click("#playground-run")
    wait_for(page, "succeeded", RUN_TIMEOUT_MS)

    prediction = latest(model__slug=SMOLLM2)
    assert prediction.status == Status.SUCCEEDED and prediction.output.strip()
    assert prediction.input["messages"] == example["messages"]
    assert prediction.input["max_new_tokens"] == example["max_new_tokens"]
    # The streamed reply was redrawn several times before the final one.
    streamed = list(dict.fromkeys(page.evaluate("window.e2eReplies")))
    assert len(streamed) >= 3, streamed
    reply = page.locator(f"{REPLIES} .message-body").last
    # Rendered as Markdown: blocks, not the raw text in one run of characters.
    assert reply.locator("p, ol, ul, pre, h1, h2, h3").count() >= 1
    # Only a closed pair is bold: a reply cut off by max_new_tokens may end inside one.
    if re.search(r"\*\*[^*\n]+\*\*", prediction.output):
        assert reply.locator("strong").count() >= 1
    if re.search(r"^\s*\d+\.\s", prediction.output, re.M):
        assert reply.locator("ol > li").count() >= 1
    assert page.locator(REPLIES).last.get_attribute("data-raw") == prediction.output
    expect(page.locator("#playground-metrics")).to_contain_text("out tokens")
    expect(page.locator("#pg-prompt")).to_have_value("")
    screenshot(page, "playground-chat-reply")


@pytest.mark.timeout(180)
def test_every_message_sends_the_whole_thread_and_regenerate_replaces_the_last_reply(
    page, live, owner, catalog
):
    log_in(page, owner.email)
    echo_page(page)
    page.fill("#pg-system", "You repeat what you are told.")
    send(page, "first message")
    expect(page.locator("#pg-prompt")).to_have_value("")
    # Enter sends; Shift+Enter would start a new line.
    page.fill("#pg-prompt", "second message")
    page.locator("#pg-prompt").press("Enter")
    wait_for(page, "succeeded")
    expect(page.locator(MESSAGES)).to_have_count(4)
    second = latest(model__slug="echo")
    history = [
        {"role": "system", "content": "You repeat what you are told."},
        {"role": "user", "content": "first message"},
        {"role": "assistant", "content": "first message"},
        {"role": "user", "content": "second message"},
    ]
    assert second.input["messages"] == history
    # Parameters left at their defaults are the model's to choose, not sent.
    assert "max_new_tokens" not in second.input and "temperature" not in second.input
    assert second.input["tokens_per_second"] == 0

    page.click("#playground-regenerate")
    expect(page.locator("#playground-link")).not_to_have_attribute(
        "href", f"/predictions/{second.id}/", timeout=ECHO_TIMEOUT_MS
    )
    wait_for(page, "succeeded")
    regenerated = latest(model__slug="echo")
    assert regenerated.pk != second.pk
    assert regenerated.input["messages"] == history  # the old reply is not sent
    expect(page.locator(MESSAGES)).to_have_count(4)  # replaced, not added
    assert reply_texts(page) == ["first message", "second message"]
    screenshot(page, "playground-chat-thread")

    page.click("#playground-clear")
    expect(page.locator(MESSAGES)).to_have_count(0)
    expect(page.locator("#playground-regenerate")).to_be_disabled()
    expect(page.locator("#playground-clear")).to_be_disabled()
    send(page, "after clearing")
    assert latest(model__slug="echo").input["messages"] == [
        {"role": "system", "content": "You repeat what you are told."},
        {"role": "user", "content": "after clearing"},
    ]


@pytest.mark.timeout(180)
def test_stop_cancels_the_run_and_keeps_the_reply_so_far(page, live, owner, catalog):
    log_in(page, owner.email)
    echo_page(page, tokens_per_second=4)
    expect(page.locator("#playground-cancel")).to_be_disabled()
    page.fill("#pg-prompt", " ".join(f"word{n}" for n in range(200)))
    page.click("#playground-run")
    expect(page.locator("#playground-run")).to_be_disabled()
    expect(page.locator(f"{REPLIES} .message-body").last).to_contain_text(
        "word1", timeout=ECHO_TIMEOUT_MS
    )
    page.click("#playground-cancel")
    wait_for(page, "canceled")
    prediction = latest(model__slug="echo")
    assert prediction.status == Status.CANCELED
    assert 0 < prediction.output_tokens < 200
    expect(page.locator(REPLIES).last).to_have_class(re.compile(r"\bstopped\b"))
    expect(page.locator("#playground-run")).to_be_enabled()
    expect(page.locator("#playground-cancel")).to_be_disabled()
    # The stopped reply is part of the thread the next message carries.
    send(page, "go on")
    messages = latest(model__slug="echo").input["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"].startswith("word0 word1")


@pytest.mark.timeout(180)
def test_model_output_is_markdown_that_cannot_run_script(page, live, owner, catalog):
    """The echo model writes back whatever it is sent: here, HTML meant to run."""
    page.add_init_script(RECORD_VIOLATIONS_JS)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in(page, owner.email)
    echo_page(page)
    text = (
        "Some **bold**, `code` and a [link](javascript:window.pwned=3).\n\n"
        "- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "```python\ndef double(x):\n    return x * 2\n```\n\n"
        '<script>window.pwned = 1</script><img src="x" onerror="window.pwned = 2">\n\n'
        '![tracker](http://127.0.0.1:9/pixel.png) <b onmouseover="window.pwned = 4">hover</b>'
    )
    send(page, text)
    reply = page.locator(f"{REPLIES} .message-body").last
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply.locator("li")).to_have_count(2)
    expect(reply.locator("table td")).to_have_count(2)
    # The code block is highlighted as Python.
    expect(reply.locator("pre code.hljs .hljs-keyword").first).to_have_text("def")
    # No element from the model's HTML: it is shown as text.
    assert reply.locator("script, img, b, [onerror], [onmouseover]").count() == 0
    expect(reply).to_contain_text('<img src="x" onerror="window.pwned = 2">')
    assert reply.locator("a[href^='javascript']").count() == 0
    assert page.evaluate("window.pwned") is None
    assert page.evaluate("window.cspViolations") == []
    # The reply's copy button copies the Markdown as the model wrote it.
    page.locator(f"{REPLIES} .copy-message").last.click()
    assert page.evaluate("navigator.clipboard.readText()") == text
    screenshot(page, "playground-sanitized")


# --- Embeddings and classification ---------------------------------------------------------


@pytest.mark.timeout(240)
def test_embeddings_send_a_list_and_show_a_similarity_matrix(page, live, owner, catalog):
    log_in(page, owner.email)
    page.goto("/models/all-minilm-l6-v2/")
    example = catalog["all-minilm-l6-v2"].example_input["input"]
    expect(page.locator("#pg-input")).to_have_value("\n".join(example))
    page.click("#playground-run")
    wait_for(page, "succeeded", RUN_TIMEOUT_MS)
    prediction = latest(model__slug="all-minilm-l6-v2")
    assert prediction.input == {"input": example}  # a list, as the example is
    assert len(prediction.output) == 2
    expect(page.locator("#playground-output")).to_contain_text("2 vectors")
    expect(page.locator(".embedding-dimension")).to_have_text("384")
    expect(page.locator(".similarity td.sim")).to_have_count(4)
    assert page.locator(".similarity td.sim").nth(0).text_content() == "1.00"

    page.fill("#pg-input", "A cat sits on the mat.\nA kitten rests on a rug.\nStocks fell today.")
    page.click("#playground-run")
    expect(page.locator(".similarity td.sim")).to_have_count(9, timeout=ECHO_TIMEOUT_MS)
    cells = [float(t) for t in page.locator(".similarity td.sim").all_text_contents()]
    # The two sentences about cats are closer to each other than to the market.
    assert cells[1] > cells[2] and cells[1] > cells[5]
    with page.expect_download() as download:
        page.get_by_role("button", name="Download JSON").click()
    vectors = json.loads(Path(download.value.path()).read_text())
    assert [len(v) for v in vectors] == [384, 384, 384]
    screenshot(page, "playground-embeddings")


@pytest.mark.timeout(240)
def test_the_classifier_draws_labelled_bars(page, live, owner, catalog):
    log_in(page, owner.email)
    page.goto("/models/minilm-zero-shot-classifier/")
    expect(page.locator("#playground-output .pg-placeholder")).to_be_visible()
    page.click("#playground-run")
    wait_for(page, "succeeded", RUN_TIMEOUT_MS)
    bars = page.locator("#playground-output .bar")
    expect(bars).to_have_count(3)
    expect(bars.first.locator(".bar-label")).to_have_text("positive")
    expect(bars.first).to_have_class(re.compile(r"\bbest\b"))
    widths = [
        page.locator("#playground-output .bar-fill").nth(i).bounding_box()["width"]
        for i in range(3)
    ]
    assert widths[0] > widths[1] >= widths[2]
    assert bars.first.locator(".bar-value").text_content().endswith("%")
    # Only the bars: no empty text box, no token counts that mean nothing here.
    assert page.locator("#playground-output pre, #playground-output .markdown").count() == 0
    expect(page.locator("#playground-metrics")).not_to_contain_text("out tokens")
    screenshot(page, "playground-classifier")


# --- The API tab ---------------------------------------------------------------------------


def run_shown(command: list[str], token: str) -> dict:
    env = {**os.environ, "MODEL_PORTAL_TOKEN": token}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.timeout(240)
def test_the_api_tab_shows_the_call_just_run_and_it_runs(page, live, owner, catalog):
    log_in(page, owner.email)
    echo_page(page, tokens_per_second=0)
    page.fill("#pg-system", "Say it back.")
    code = page.locator("#playground-code")
    # Before anything runs, the tab shows the call that Run would make.
    page.fill("#pg-prompt", "not sent yet")
    page.click("#playground-tab-api")
    expect(page.locator("#playground-panel-output")).to_be_hidden()
    expect(code).to_contain_text('"content": "not sent yet"')
    expect(page.locator("#playground-api-note")).to_contain_text("The call Run makes")
    page.click("#playground-tab-output")
    send(page, "it's an API call")
    page.click("#playground-tab-api")
    expect(page.locator("#playground-api-note")).to_contain_text("The call you just ran")
    tabs = page.locator("#playground-languages [role=tab]")
    expect(tabs).to_have_text(["curl", "Python", "OpenAI SDK", "JavaScript"])
    expect(page.locator("#playground-code")).to_contain_text("$MODEL_PORTAL_TOKEN")
    expect(code).to_contain_text(live.base_url + "/api/v1/predictions")
    assert page.locator("#playground-code .hljs-string").count() > 0  # highlighted
    curl = page.locator("#playground-code").text_content()
    assert "it'\\''s an API call" in curl  # the exact message, quoted for the shell

    ran = latest(model__slug="echo")
    token = services.issue_token(Organization.objects.get(pk=ran.org_id), None, "e2e").plaintext
    result = json.loads(run_shown(["bash", "-c", curl], token))
    assert result["status"] == "succeeded" and result["output"] == "it's an API call"
    assert result["input"] == ran.input  # the very call the playground made

    tabs.get_by_text("Python", exact=True).click()
    python = page.locator("#playground-code").text_content()
    assert "os.environ['MODEL_PORTAL_TOKEN']" in python
    printed = run_shown([sys.executable, "-c", python], token)
    assert printed.strip() == "succeeded it's an API call"

    tabs.get_by_text("OpenAI SDK", exact=True).click()
    expect(page.locator("#playground-code")).to_contain_text('"content": "Say it back."')
    expect(page.locator("#playground-code")).to_contain_text(f'base_url="{live.base_url}/v1"')
    tabs.get_by_text("JavaScript", exact=True).click()
    expect(page.locator("#playground-code")).to_contain_text("process.env.MODEL_PORTAL_TOKEN")
    screenshot(page, "playground-api-tab")


# --- Errors ---------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_errors_name_the_field_in_words(page, live, owner, catalog):
    log_in(page, owner.email)
    echo_page(page)
    page.fill("#pg-prompt", "")
    page.click("#playground-run")
    expect(page.locator("#pg-prompt")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".composer .field-error")).to_have_text("Write a message first.")
    assert Prediction.objects.count() == 0

    page.fill("#pg-prompt", "too many tokens")
    page.fill("#pg-max_new_tokens", "99999")
    page.click("#playground-run")
    error = page.locator("#pg-max_new_tokens-error")
    expect(error).to_have_text("Max tokens must be at most 4096.")
    expect(page.locator("#pg-max_new_tokens")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(STATUS)).to_have_text("idle")
    # Nothing ran: the message is back in the composer, the thread is as it was.
    expect(page.locator("#pg-prompt")).to_have_value("too many tokens")
    expect(page.locator(MESSAGES)).to_have_count(0)
    expect(page.locator("#playground-error")).to_be_hidden()
    screenshot(page, "playground-field-error")

    page.goto("/models/minilm-zero-shot-classifier/")
    page.fill("#pg-labels", "sports\nsports")
    page.click("#playground-run")
    expect(page.locator("#pg-labels-error")).to_have_text("Labels must not repeat an item.")
    page.fill("#pg-text", "")
    page.click("#playground-run")
    expect(page.locator("#pg-text-error")).to_have_text("Fill in text.")
    for message in page.locator(".field-error:visible").all_text_contents():
        assert "input." not in message


# --- Prefill from a prediction ---------------------------------------------------------------


def stored_chat(org: Organization, user, listing: ModelListing) -> Prediction:
    return Prediction.objects.create(
        org=org,
        user=user,
        model=listing,
        status=Status.SUCCEEDED,
        input={
            "messages": [
                {"role": "system", "content": "Team system prompt"},
                {"role": "user", "content": "team question one"},
                {"role": "assistant", "content": "team answer one"},
                {"role": "user", "content": "team question two"},
            ],
            "tokens_per_second": 0,
        },
        output="team question two",
    )


def switch_org(page: Page, org: Organization) -> None:
    page.goto("/dashboard/")
    page.select_option("#org-switch", org.slug)
    page.wait_for_load_state()
    expect(page.locator("#org-switch")).to_have_value(org.slug)


@pytest.mark.timeout(240)
def test_open_in_playground_prefills_for_the_org_and_nobody_else(
    new_context, live, owner, teammate, outsider, org, catalog
):
    with transaction.atomic():  # a team workspace runs nothing until it has a plan
        grant_plan(org, Plan.objects.get(slug="team"), None)
    prediction = stored_chat(org, owner, catalog["echo"])

    owner_page = new_context().new_page()
    log_in(owner_page, owner.email)
    switch_org(owner_page, org)
    owner_page.goto(f"/predictions/{prediction.id}/")
    owner_page.click("#open-in-playground")
    owner_page.wait_for_url(re.compile(rf"/models/echo/\?from={prediction.id}#playground$"))
    expect(owner_page.locator("#playground-prefilled")).to_contain_text(prediction.id)
    expect(owner_page.locator("#pg-system")).to_have_value("Team system prompt")
    expect(owner_page.locator(MESSAGES)).to_have_text(
        [re.compile("team question one"), re.compile("team answer one")]
    )
    expect(owner_page.locator("#pg-prompt")).to_have_value("team question two")
    screenshot(owner_page, "playground-prefilled")
    owner_page.click("#playground-run")
    wait_for(owner_page, "succeeded")
    rerun = Prediction.objects.exclude(pk=prediction.pk).get(org=org)
    assert rerun.input == prediction.input  # the same call again

    teammate_page = new_context().new_page()
    log_in(teammate_page, teammate.email)
    switch_org(teammate_page, org)
    teammate_page.goto(f"/models/echo/?from={prediction.id}")
    expect(teammate_page.locator("#pg-prompt")).to_have_value("team question two")
    expect(teammate_page.locator(MESSAGES)).to_have_count(2)

    outsider_page = new_context().new_page()
    log_in(outsider_page, outsider.email)
    outsider_page.goto(f"/models/echo/?from={prediction.id}")
    example = catalog["echo"].example_input["prompt"]
    expect(outsider_page.locator("#pg-prompt")).to_have_value(example)
    expect(outsider_page.locator("#pg-system")).to_have_value("")
    expect(outsider_page.locator(MESSAGES)).to_have_count(0)
    expect(outsider_page.locator("#playground-prefilled")).to_have_count(0)
    assert "team question" not in outsider_page.content()
