"""An owner creates a team and invites a teammate from the members page; the teammate
accepts in another browser (their own session) and, as a plain member, may look at the
team's billing but not buy a plan or manage API tokens."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, expect

from portal.models import Membership, Role
from tests.e2e.conftest import MailLog, csrf_headers, log_in, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
TEAM = "Acme AI"


def accept_invitation(context: BrowserContext, email: str, link: str) -> None:
    page = context.new_page()
    log_in(page, email)
    page.goto(link)
    expect(page.locator("main h1")).to_have_text(f"Join {TEAM}")
    page.get_by_role("button", name="Accept invitation").click()
    page.wait_for_url("**/dashboard/")
    expect(page.locator(".messages")).to_contain_text(f"You joined {TEAM}.")
    expect(page.locator("main")).to_contain_text("You are member of this organization")


@pytest.mark.timeout(180)
def test_invited_teammate_joins_as_member_without_billing_rights(
    page, new_context, live, mail_log: MailLog, owner, teammate, catalog
):
    log_in(page, owner.email)
    page.goto("/orgs/")
    page.fill("#id_name", TEAM)
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url("**/org/members/")
    page.fill("#id_email", teammate.email)
    page.select_option("#id_role", Role.MEMBER)
    page.get_by_role("button", name="Send invitation").click()
    expect(page.locator(".messages")).to_contain_text(f"Invitation sent to {teammate.email}.")
    expect(page.locator("main")).to_contain_text(f"{teammate.email} as member")

    teammate_context = new_context()
    accept_invitation(
        teammate_context, teammate.email, mail_log.link_to(teammate.email, "/invitations/")
    )
    membership = Membership.objects.get(user=teammate, org__name=TEAM)
    assert membership.role == Role.MEMBER

    # The owner sees the new member on the members page.
    page.reload()
    expect(page.locator("tbody tr", has_text=teammate.email)).to_be_visible()
    screenshot(page, "members")

    # The teammate may read the billing page, without the owner's controls...
    mate = teammate_context.pages[0]
    mate.goto("/billing/")
    expect(mate.locator("main h1")).to_have_text("Billing")
    expect(mate.get_by_role("button", name="Manage billing")).to_have_count(0)
    mate.goto("/pricing/")
    expect(mate.get_by_role("button", name="Subscribe to Pro")).to_have_count(0)
    expect(mate.locator("main")).to_contain_text("Only an owner of the organization can subscribe.")
    # ...but the server refuses a checkout even when asked directly,
    checkout = mate.request.post(
        "/billing/checkout/pro/", headers=csrf_headers(teammate_context), max_redirects=0
    )
    assert checkout.status == 403
    # and the tokens page, which the navigation does not offer a member, is forbidden.
    expect(mate.locator("nav")).not_to_contain_text("API tokens")
    response = mate.goto("/org/tokens/")
    assert response is not None and response.status == 403
    expect(mate.locator("main h1")).to_have_text("Not allowed")
