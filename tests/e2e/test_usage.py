"""After a real prediction (run from the playground, settled by the worker), the
predictions pages list it and the usage page draws it in its server-side SVG charts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from inference.models import Prediction, Status
from tests.e2e.conftest import log_in, screenshot
from tests.e2e.test_playground import echo_page, send

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PROMPT = "usage charts need real data"

# Drawn height/width of each bar (rect) of the chart titled `title`.
BAR_SIZES_JS = """(title) => {
  const svg = document.querySelector(`svg.chart[aria-label="${title}"]`);
  return [...svg.querySelectorAll("rect")].map((r) => {
    const box = r.getBBox();
    return {label: r.querySelector("title").textContent, width: box.width, height: box.height};
  });
}"""


def run_echo_in_playground(page: Page) -> None:
    echo_page(page, tokens_per_second=100)
    send(page, PROMPT)


def bars(page: Page, title: str) -> list[dict]:
    return page.evaluate(BAR_SIZES_JS, title)


@pytest.mark.timeout(180)
def test_usage_page_charts_a_real_prediction(page, live, owner, catalog):
    log_in(page, owner.email)
    run_echo_in_playground(page)
    prediction = Prediction.objects.get(model__slug="echo")
    assert prediction.status == Status.SUCCEEDED

    page.click("nav >> text=Predictions")
    row = page.locator("tbody tr", has_text=prediction.id)
    expect(row).to_contain_text("succeeded")
    screenshot(page, "predictions")
    row.get_by_role("link", name=prediction.id).click()
    expect(page.locator("main")).to_contain_text(PROMPT)
    screenshot(page, "prediction-detail")

    page.click("nav >> text=Usage")
    expect(page.locator("svg.chart")).to_have_count(6)
    expect(page.locator("tbody tr", has_text="echo")).to_be_visible()
    today = datetime.now(UTC).date().isoformat()
    per_day = bars(page, "Requests per day")
    drawn = [b["label"] for b in per_day if b["height"] > 0 and b["width"] > 0]
    assert drawn == [f"{today}: 1"], per_day
    (per_model,) = bars(page, "Requests per model")
    assert per_model["label"] == "echo: 1" and per_model["width"] > 0
    tokens = bars(page, "Tokens per model")
    assert tokens[0]["label"] == f"echo: {prediction.input_tokens + prediction.output_tokens}"
    screenshot(page, "usage")
