"""A prediction's page shows what the customer sent and got, drawn by task, at desktop
and at phone width: Markdown, a raw / JSON toggle, embeddings summarised, classifier
bars, and a Copy as curl button that puts the command recreating it on the clipboard."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from inference.models import Prediction, Source, Status
from models_hub.models import ModelListing
from tests.e2e.conftest import SMOLLM2, log_in, screenshot
from tests.e2e.test_csp import Watch
from tests.e2e.test_mobile import OVERFLOW_JS, PHONE
from tests.e2e.test_playground import echo_page, send

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PROMPT = "Some **bold** words and `code` for a long line " + "word " * 30
DESKTOP = {"width": 1280, "height": 900}


def run_echo_in_playground(page: Page) -> Prediction:
    """A real prediction: run from the playground and settled by the worker."""
    echo_page(page, tokens_per_second=1000)
    send(page, PROMPT)
    return Prediction.objects.get(model__slug="echo")


def other_tasks(org_id: int, catalog: dict[str, ModelListing]) -> dict[str, Prediction]:
    """Stored results of the other tasks, as their runners write them (running the
    encoders on a CPU would only make this test slower, not truer about the pages)."""
    common = {"org_id": org_id, "status": Status.SUCCEEDED, "source": Source.API}
    chat = Prediction.objects.create(
        model=catalog[SMOLLM2],
        input={"messages": [
            {"role": "system", "content": "Answer in one line."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "*Blue*."},
            {"role": "user", "content": "Another one?"},
        ], "max_new_tokens": 24},
        output="Green, like `grass`.",
        **common,
    )  # fmt: skip
    embeddings = Prediction.objects.create(
        model=catalog["all-minilm-l6-v2"],
        input={"input": ["a cat", "a dog", "an invoice"]},
        output=[[round((i * 37 % 100) / 100 - 0.5, 4) for i in range(384)] for _ in range(3)],
        **common,
    )
    classification = Prediction.objects.create(
        model=catalog["minilm-zero-shot-classifier"],
        input={"text": "I love this product"},
        output=[{"label": "positive", "score": 0.93}, {"label": "negative", "score": 0.07}],
        **common,
    )
    return {"chat": chat, "embeddings": embeddings, "classification": classification}


def check_pages(page: Page, echo: Prediction, others: dict[str, Prediction]) -> None:
    """Each page as drawn by its scripts, which run under the CSP without an error."""
    watch = Watch(page)
    watch.visit(f"/predictions/{echo.id}/")
    expect(page.locator("#output-text strong")).to_have_text("bold")  # Markdown, rendered
    expect(page.locator("#output-text code").first).to_have_text("code")
    expect(page.locator("#output-raw")).to_be_hidden()
    page.locator("#output-raw-toggle summary").click()
    expect(page.locator("#output-raw")).to_be_visible()
    expect(page.locator("#output-raw")).to_contain_text("Some **bold** words")
    page.locator("#copy-curl").click()
    expect(page.locator("#copy-curl")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.locator("#curl-command").text_content()
    assert "/api/v1/predictions" in copied and "$MODEL_PORTAL_TOKEN" in copied
    assert '"model": "echo"' in copied and "Some **bold** words" in copied
    expect(page.locator("#copy-curl")).to_have_text("Copy as curl", timeout=10_000)
    expect(page.locator("#open-in-playground")).to_be_visible()
    watch.assert_clean("text generation")

    watch.visit(f"/predictions/{others['chat'].id}/")
    expect(page.locator("#prediction-input .message")).to_have_count(4)
    expect(page.locator("#prediction-input .message-assistant em")).to_have_text("Blue")
    expect(page.locator("#output-text code")).to_have_text("grass")
    watch.assert_clean("chat")

    watch.visit(f"/predictions/{others['embeddings'].id}/")
    rendered = page.locator("#output-rendered.rendered")
    expect(rendered.locator(".embedding-dimension")).to_have_text("384")
    expect(rendered.get_by_role("button", name="Download JSON")).to_be_visible()
    expect(rendered.locator(".similarity")).to_be_visible()
    assert page.locator("main").bounding_box()["height"] < 3000  # not pages of floats
    watch.assert_clean("embeddings")

    watch.visit(f"/predictions/{others['classification'].id}/")
    expect(page.locator("#output-rendered .bars .bar")).to_have_count(2)
    expect(page.locator("#output-rendered .bar.best .bar-label")).to_have_text("positive")
    expect(page.locator("#output-json")).to_be_hidden()
    page.locator("#output-json-toggle summary").click()
    expect(page.locator("#output-json")).to_contain_text('"label": "positive"')
    watch.assert_clean("classification")


def fits(page: Page, path: str, name: str) -> dict | None:
    """What sticks out of the phone's screen on the page at `path`; None if nothing."""
    page.goto(path)
    page.wait_for_load_state("load")
    screenshot(page, f"prediction-pages-{name}")
    fit = page.evaluate(OVERFLOW_JS, PHONE["width"])
    return fit if fit["scrollWidth"] > PHONE["width"] else None


@pytest.mark.timeout(240)
def test_prediction_pages_at_desktop_and_phone_width(new_context, owner, catalog):
    clipboard = ["clipboard-read", "clipboard-write"]
    desktop = new_context(viewport=DESKTOP, permissions=clipboard)
    runner = desktop.new_page()
    log_in(runner, owner.email)
    echo = run_echo_in_playground(runner)
    others = other_tasks(echo.org_id, catalog)

    runner.goto("/predictions/?model=echo")
    expect(runner.locator("tbody tr")).to_have_count(1)
    expect(runner.locator("tbody tr")).to_contain_text("Some **bold** words")
    expect(runner.locator("tbody tr")).to_contain_text("playground")
    runner.select_option("#filter-source", "api")
    expect(runner.locator("#filter-model")).to_have_value("echo")
    expect(runner.locator("tbody tr")).to_contain_text("No predictions match")
    screenshot(runner, "prediction-pages-desktop-list")
    check_pages(runner, echo, others)

    phone = {"viewport": PHONE, "is_mobile": True, "has_touch": True, "permissions": clipboard}
    member = new_context(**phone).new_page()
    log_in(member, owner.email)
    check_pages(member, echo, others)
    paths = {"list": "/predictions/", "echo": f"/predictions/{echo.id}/"}
    paths |= {name: f"/predictions/{p.id}/" for name, p in others.items()}
    found = {path: fits(member, path, name) for name, path in paths.items()}
    assert {path: fit for path, fit in found.items() if fit} == {}
