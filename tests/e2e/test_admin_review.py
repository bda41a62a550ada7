"""Operator review (issue #15): staff open a submitted listing in Django admin, preview
its model page, return it with a note; the publisher reads the note and resubmits; staff
approve the new revision and publish it, and it shows in the catalog."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from models_hub import services
from models_hub.models import ListingStatus, ModelListing
from portal.models import Organization
from tests.e2e.conftest import log_in, screenshot
from tests.models_hub.test_admin_review import FIELDS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
STAFF_PASSWORD = "x-very-long-pass-1"  # tests/conftest.py's `staff`
NOTE = "Say which licence the weights are under."


def admin_log_in(page: Page, username: str) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", STAFF_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")
    expect(page.locator("#site-name")).to_have_text("Model Portal administration")


def open_submission(page: Page) -> None:
    """From the review queue (the changelist filtered to pending review) to its page."""
    page.goto("/admin/models_hub/modellisting/?status__exact=pending_review")
    page.locator("#result_list").get_by_role("link", name="Acme Chat").click()
    expect(page.locator("#review-decision")).to_be_visible()


@pytest.mark.timeout(180)
def test_staff_return_then_approve_a_submission(new_context, live, owner, staff):
    workspace = Organization.objects.get(memberships__user=owner, is_personal=True)
    services.create_listing(workspace, owner, "acme-chat", FIELDS, ["chat"])
    services.submit_for_review(workspace, owner, "acme-chat")

    operator_context = new_context()
    operator = operator_context.new_page()
    admin_log_in(operator, staff.username)
    open_submission(operator)

    # The preview opens the model page as customers will see it, marked as unpublished.
    with operator_context.expect_page() as opened:
        operator.get_by_role("link", name="Preview model page").click()
    preview = opened.value
    expect(preview.locator(".preview-banner")).to_contain_text("Preview — not published")
    expect(preview.locator("main h1")).to_have_text("Acme Chat")
    screenshot(preview, "admin-review-preview")
    preview.close()

    # Returning needs a note: without one nothing changes.
    operator.get_by_role("button", name="Return to publisher").click()
    expect(operator.locator(".messagelist")).to_contain_text("Write a note")
    assert ModelListing.objects.get(slug="acme-chat").status == ListingStatus.PENDING_REVIEW
    operator.fill("#id_return_note", NOTE)
    operator.get_by_role("button", name="Return to publisher").click()
    expect(operator.locator(".messagelist")).to_contain_text("returned to the publisher")
    screenshot(operator, "admin-review-returned")

    # The publisher reads the note, and submits again.
    publisher = new_context().new_page()
    log_in(publisher, owner.email)
    publisher.goto("/models/publish/")
    row = publisher.locator("tbody tr", has_text="acme-chat")
    expect(row).to_contain_text(f"Reviewer: {NOTE}")
    row.get_by_role("button", name="Submit for review").click()
    expect(publisher.locator(".messages")).to_contain_text("Submitted for review")
    expect(row).not_to_contain_text(NOTE)

    # Staff approve the new revision and publish it.
    open_submission(operator)
    revision = ModelListing.objects.get(slug="acme-chat").content_revision
    operator.get_by_role("button", name=f"Approve revision {revision}").click()
    expect(operator.locator(".messagelist")).to_contain_text(
        f"Revision {revision} of acme-chat approved."
    )
    operator.goto("/admin/models_hub/modellisting/?status__exact=pending_review")
    operator.locator("#result_list tbody tr", has_text="Acme Chat").locator(
        "input.action-select"
    ).check()
    operator.select_option("select[name=action]", "publish")
    operator.get_by_role("button", name="Go", exact=True).click()
    expect(operator.locator(".messagelist")).to_contain_text("1 of 1 listing(s) published.")

    # Anyone finds it in the catalog now.
    visitor = new_context().new_page()
    visitor.goto("/models/")
    expect(visitor.locator('.model-card[data-model="acme-chat"]')).to_be_visible()
    visitor.goto("/models/acme-chat/")
    expect(visitor.locator(".preview-banner")).to_have_count(0)
    expect(visitor.locator("main h1")).to_have_text("Acme Chat")
