"""First run (issue #15): a visitor's landing page leads with a real model, the catalog's
cards carry a Try button, a signed-in user lands on the dashboard, and moments show in
the browser's own zone with the zone's name."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.core.cache import cache
from playwright.sync_api import expect

from inference import catalog_stats
from inference.models import Prediction, Status
from inference.tasks import refresh_catalog_stats
from portal.models import Organization
from tests.e2e.conftest import log_in, screenshot
from tests.livestack import send_to_stack, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
ZONE = "America/New_York"


@pytest.mark.timeout(180)
def test_first_run_from_landing_to_dashboard(new_context, live, owner, catalog):
    page = new_context(timezone_id=ZONE, locale="en-US").new_page()
    page.goto("/")
    featured = page.locator("#featured-heading + ul .model-card")
    expect(featured.first).to_be_visible()
    assert featured.first.get_attribute("data-model") != "echo"
    expect(page.locator("#home-sample")).to_contain_text("/api/v1/predictions")
    expect(page.locator("#pricing-teaser")).to_be_visible()
    screenshot(page, "first-run-landing")

    # The cards' run figures come from the periodic stats task: queued as beat queues it,
    # run by the stack's worker.
    cache.delete(catalog_stats.CACHE_KEY)
    send_to_stack(refresh_catalog_stats, queue="default")
    wait_until(lambda: cache.get(catalog_stats.CACHE_KEY) is not None, timeout=60)
    page.goto("/models/")
    cards = page.locator(".model-card")
    assert cards.first.get_attribute("data-model") != "echo"
    expect(cards.first.locator("a.try")).to_have_attribute("href", re.compile(r"#playground$"))
    expect(cards.first.locator(".runs")).to_contain_text("in the last 30 days")

    workspace = Organization.objects.get(memberships__user=owner, is_personal=True)
    moment = datetime(2026, 1, 15, 12, 30, tzinfo=UTC)
    prediction = Prediction.objects.create(
        org=workspace, model=catalog["echo"], input={"prompt": "hi"}, status=Status.SUCCEEDED
    )
    Prediction.objects.filter(pk=prediction.pk).update(created_at=moment)

    log_in(page, owner.email)  # lands on /dashboard/
    page.goto("/")
    page.wait_for_url("**/dashboard/")
    expect(page.locator("#dashboard-role")).to_contain_text("your personal workspace")
    local = moment.astimezone(ZoneInfo(ZONE))
    shown = page.locator("section[aria-labelledby=dashboard-recent] time").first
    expect(shown).to_have_text(f"{local:%Y-%m-%d %H:%M} EST")
    assert shown.get_attribute("datetime") == moment.isoformat()
    screenshot(page, "first-run-dashboard")
