"""Service-layer rules an attacker could otherwise walk around (issue #11, items 5 to 8)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from billing.checkout import grant_plan
from billing.demo import load_demo_plans
from billing.models import UsagePeriod
from inference import presence
from inference.models import Prediction
from models_hub import services as hub
from models_hub.demo import load_demo_catalog
from models_hub.models import ListingStatus, ModelListing
from portal import services
from portal.errors import Conflict
from portal.models import ApiToken, AuditLog, Role

pytestmark = pytest.mark.django_db


# --- 5. A token lives no longer than its creator's right to create it -----------------


@pytest.fixture
def admin_mate(org, owner, teammate):
    """The teammate, promoted to admin so they may create tokens."""
    services.change_role(org, owner, _mid(org, teammate), Role.ADMIN)
    return teammate


def _mid(org, user) -> int:
    return org.memberships.get(user=user).pk


def _tokens(org, owner, mate) -> tuple[str, str]:
    mine = services.issue_token(org, owner, "owner's").plaintext
    theirs = services.issue_token(org, mate, "teammate's").plaintext
    return mine, theirs


def _status(api_client, token: str) -> int:
    return api_client(token).get("/api/v1/account").status_code


def _assert_revoked(org, api_client, mine: str, theirs: str, actor, reason: str) -> None:
    assert _status(api_client, theirs) == 401
    assert _status(api_client, mine) == 200
    prefix = theirs.split("_")[1]
    assert ApiToken.objects.get(prefix=prefix).revoked_at is not None
    row = AuditLog.objects.get(org=org, action="token.revoked", target__contains=prefix)
    assert row.actor == actor
    assert row.data["reason"] == reason


def test_removed_members_tokens_stop_working(org, owner, admin_mate, api_client):
    mine, theirs = _tokens(org, owner, admin_mate)
    assert _status(api_client, theirs) == 200
    services.remove_member(org, owner, _mid(org, admin_mate))
    _assert_revoked(org, api_client, mine, theirs, owner, "member.removed")


def test_a_member_who_leaves_takes_their_tokens_along(org, owner, admin_mate, api_client):
    mine, theirs = _tokens(org, owner, admin_mate)
    services.leave_org(org, admin_mate)
    _assert_revoked(org, api_client, mine, theirs, admin_mate, "member.left")


def test_demotion_below_token_rights_revokes_tokens(org, owner, admin_mate, api_client):
    mine, theirs = _tokens(org, owner, admin_mate)
    services.change_role(org, owner, _mid(org, admin_mate), Role.MEMBER)
    _assert_revoked(org, api_client, mine, theirs, owner, "member.role_changed")


def test_a_deactivated_users_tokens_stop_working(org, owner, admin_mate, api_client):
    """An operator who deactivates an account (admin, no service call) ends its tokens."""
    mine, theirs = _tokens(org, owner, admin_mate)
    get_user_model().objects.filter(pk=admin_mate.pk).update(is_active=False)
    assert _status(api_client, theirs) == 401
    assert _status(api_client, mine) == 200


def test_a_role_change_that_keeps_token_rights_keeps_tokens(org, owner, admin_mate, api_client):
    _, theirs = _tokens(org, owner, admin_mate)
    services.change_role(org, owner, _mid(org, admin_mate), Role.OWNER)
    assert _status(api_client, theirs) == 200
    assert not AuditLog.objects.filter(org=org, action="token.revoked").exists()


def test_removal_revokes_only_tokens_of_that_org(org, owner, admin_mate, api_client):
    """The teammate's tokens in their own personal workspace are theirs to keep."""
    personal = admin_mate.memberships.get(org__is_personal=True).org
    elsewhere = services.issue_token(personal, admin_mate, "personal").plaintext
    services.remove_member(org, owner, _mid(org, admin_mate))
    assert _status(api_client, elsewhere) == 200


# --- 7. Staff publish exactly the revision they reviewed ------------------------------

LISTING = {
    "name": "Acme Chat",
    "summary": "Our chat model",
    "description": "Trained on *everything*.",
    "task": "text-generation",
    "source": "hf:acme/chat-7b@v1",
    "visibility": "public",
}


@pytest.fixture
def submitted(org, owner) -> ModelListing:
    hub.create_listing(org, owner, "acme-chat", LISTING, [])
    return hub.submit_for_review(org, owner, "acme-chat")


def _staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def _approve_as_reviewed(client: Client, listing: ModelListing):
    """What a reviewer does in admin: reads the change page, then approves what it showed."""
    change = reverse("admin:models_hub_modellisting_change", args=[listing.pk])
    page = client.get(change).content.decode()
    revision = re.search(r'name="revision" value="(\d+)"', page)[1]
    return client.post(_approve_url(listing), {"revision": revision})


def _approve_url(listing: ModelListing) -> str:
    return reverse("admin:models_hub_modellisting_approve", args=[listing.pk])


def _publish_action(client: Client, listing: ModelListing):
    return client.post(
        reverse("admin:models_hub_modellisting_changelist"),
        {"action": "publish", "_selected_action": [listing.pk]},
        follow=True,
    )


def test_content_swapped_after_approval_is_not_published(org, owner, staff, submitted):
    client = _staff_client(staff)
    assert _approve_as_reviewed(client, submitted).status_code == 302
    # The publisher swaps the weights behind the reviewer's back.
    hub.withdraw_submission(org, owner, "acme-chat")
    hub.update_listing(org, owner, "acme-chat", {**LISTING, "source": "hf:evil/chat@v1"}, [])
    hub.submit_for_review(org, owner, "acme-chat")

    response = _publish_action(client, submitted)
    assert "changed since it was approved" in response.content.decode()
    submitted.refresh_from_db()
    assert submitted.status == ListingStatus.PENDING_REVIEW
    assert submitted.published_at is None
    with pytest.raises(Conflict) as caught:
        hub.publish_listings(ModelListing.objects.filter(pk=submitted.pk), staff)
    assert caught.value.code == "review_outdated"


def test_approval_of_a_page_that_went_stale_is_refused(org, owner, staff, submitted):
    """The reviewer read revision N; the publisher resubmitted before the click."""
    client = _staff_client(staff)
    seen = submitted.content_revision
    hub.withdraw_submission(org, owner, "acme-chat")
    hub.update_listing(org, owner, "acme-chat", {**LISTING, "source": "hf:evil/chat@v1"}, [])
    hub.submit_for_review(org, owner, "acme-chat")
    response = client.post(_approve_url(submitted), {"revision": seen}, follow=True)
    assert "changed since you opened it" in response.content.decode()
    submitted.refresh_from_db()
    assert submitted.approved_revision is None


def test_unapproved_submission_is_not_published(staff, submitted):
    response = _publish_action(_staff_client(staff), submitted)
    assert "was never approved" in response.content.decode()
    submitted.refresh_from_db()
    assert submitted.status == ListingStatus.PENDING_REVIEW


def test_the_reviewed_revision_is_published(org, staff, submitted):
    client = _staff_client(staff)
    assert _approve_as_reviewed(client, submitted).status_code == 302
    _publish_action(client, submitted)
    submitted.refresh_from_db()
    assert submitted.status == ListingStatus.PUBLISHED
    assert submitted.source == LISTING["source"]
    approved = AuditLog.objects.get(org=org, action="model.approved")
    assert approved.data["revision"] == submitted.content_revision


# --- 6. The free allowance comes with a person, not with every org they create ---------

WORKER = "service-rules@host"


@pytest.fixture
def demo_plans(db):
    """The demo catalog and plans (Free is the default) and a worker announced for them."""
    load_demo_catalog()
    plans = {plan.slug: plan for plan in load_demo_plans()}
    presence.announce(WORKER, ["cpu", "default"])
    yield plans
    presence.withdraw(WORKER, ["cpu", "default"])


def _predict(api_client, org, owner):
    token = services.issue_token(org, owner, "farm").plaintext
    body = {"model": "echo", "input": {"prompt": "free tokens please"}}
    return api_client(token).post("/api/v1/predictions", body, content_type="application/json")


def test_team_workspaces_do_not_multiply_the_free_allowance(owner, demo_plans, api_client):
    teams = [services.create_org(f"Farm {n}", owner) for n in range(5)]
    for team in teams:
        response = _predict(api_client, team, owner)
        assert response.status_code == 402, response.content
        error = response.json()["error"]
        assert error["code"] == "subscription_required"
        assert "subscribe" in error["message"]
    assert not Prediction.objects.filter(org__in=teams).exists()
    assert not UsagePeriod.objects.filter(org__in=teams).exists()
    personal = owner.memberships.get(org__is_personal=True).org
    assert _predict(api_client, personal, owner).status_code == 201


def test_a_team_workspace_predicts_once_it_has_a_plan(owner, demo_plans, api_client):
    team = services.create_org("Paying team", owner)
    grant_plan(team, demo_plans["team"], None)
    assert _predict(api_client, team, owner).status_code == 201


def test_a_membership_deleted_in_admin_ends_its_tokens_too(org, owner, admin_mate, api_client):
    """Staff removing someone in Django admin bypasses the services: the token lookup
    itself checks that the creator still holds the right to tokens in the org."""
    mine, theirs = _tokens(org, owner, admin_mate)
    staff = get_user_model().objects.create_superuser(
        username="ops@example.com", email="ops@example.com", password="x-very-long-pass-1"
    )
    membership = org.memberships.get(user=admin_mate)
    delete = reverse("admin:portal_membership_delete", args=[membership.pk])
    assert _staff_client(staff).post(delete, {"post": "yes"}).status_code == 302
    assert _status(api_client, theirs) == 401
    assert _status(api_client, mine) == 200
    cli = services.issue_token(org, None, "operator").plaintext
    assert _status(api_client, cli) == 200
