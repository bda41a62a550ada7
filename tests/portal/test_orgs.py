import re
import threading
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.core import mail, signing
from django.db import connection
from django.utils import timezone

from portal import services
from portal.errors import Conflict, InvalidInput
from portal.models import AuditLog, Invitation, Membership, Organization, Role
from tests.migration_steps import run_python_step

pytestmark = pytest.mark.django_db


def invite_link(email: str) -> str:
    body = next(m for m in reversed(mail.outbox) if email in m.to).body
    return re.search(r"http://testserver(/invitations/\S+/)", body).group(1)


# --- Organizations -------------------------------------------------------------------


def test_the_free_allowance_comes_with_the_personal_workspace_only(owner):
    personal = Organization.objects.get(memberships__user=owner, is_personal=True)
    team = services.create_org("Team Rocket", owner)
    assert personal.free_allowance is True
    assert team.free_allowance is False


def test_orgs_from_before_the_rule_keep_their_free_allowance(owner):
    older = services.create_org("Old team", owner)
    assert older.free_allowance is False  # what the new column says for every old row
    run_python_step("portal", "grandfather_free_allowance")(django_apps, None)
    older.refresh_from_db()
    assert older.free_allowance is True


def test_create_team_org_makes_the_creator_owner_and_switches(owner, client_for):
    client = client_for(owner)
    response = client.post("/orgs/", {"name": "Team Rocket"})
    assert response.status_code == 302
    org = Organization.objects.get(name="Team Rocket")
    assert org.memberships.get(user=owner).role == Role.OWNER
    assert client.get("/api/v1/account").json()["org"]["slug"] == org.slug


@pytest.mark.parametrize("name", ["", " ", "x" * 121])
def test_create_org_with_bad_name_creates_nothing(owner, client_for, name):
    before = Organization.objects.count()
    response = client_for(owner).post("/orgs/", {"name": name})
    assert response.status_code == 200
    assert Organization.objects.count() == before


# Names go into e-mail headers (invitation subjects) and page titles: one line of text.
MULTI_LINE_NAMES = [
    "Acme\r\nBcc: victim@example.com",
    "Acme\nAI",
    "Acme\rAI",
    "Acme\tAI",
    "Acme\x1b[31mAI",
    "Acme\x85AI",
    "Acme\u2028AI",
    "Acme\u2029AI",
]


@pytest.mark.parametrize("name", MULTI_LINE_NAMES)
def test_org_names_with_control_characters_are_refused(owner, client_for, name):
    before = Organization.objects.count()
    response = client_for(owner).post("/orgs/", {"name": name})
    assert response.status_code == 200
    assert "control characters" in response.content.decode()
    assert Organization.objects.count() == before
    with pytest.raises(InvalidInput) as caught:
        services.create_org(name, owner)
    assert caught.value.param == "name"
    assert Organization.objects.count() == before


def test_admin_refuses_to_rename_an_org_to_several_lines(admin_client, org):
    response = admin_client.post(
        f"/admin/portal/organization/{org.pk}/change/",
        {
            "slug": org.slug,
            "name": "Acme\r\nBcc: victim@example.com",
            "prediction_retention": "30 00:00:00",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert "control characters" in response.content.decode()
    org.refresh_from_db()
    assert org.name == "Acme AI"


def test_switch_to_an_org_you_are_not_in_is_404(outsider, org, client_for):
    response = client_for(outsider).post("/orgs/switch/", {"org": org.slug})
    assert response.status_code == 404


def test_switch_changes_the_current_org(teammate, org, client_for):
    client = client_for(teammate)
    assert client.post("/orgs/switch/", {"org": org.slug}).status_code == 302
    assert client.get("/api/v1/account").json()["org"]["slug"] == org.slug


def test_pages_need_login(client):
    for url in ["/dashboard/", "/orgs/", "/org/members/", "/org/tokens/", "/org/audit/"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert "/accounts/login/" in response["Location"]


def test_only_owners_delete_orgs(owner, teammate, org, client_for):
    assert client_for(teammate, org).post("/org/delete/", {"confirm": org.slug}).status_code == 403
    client_for(owner, org).post("/org/delete/", {"confirm": "wrong"})
    assert Organization.objects.filter(pk=org.pk).exists()
    client_for(owner, org).post("/org/delete/", {"confirm": org.slug})
    assert not Organization.objects.filter(pk=org.pk).exists()


# --- Members and roles -----------------------------------------------------------------


def test_members_page_lists_the_team_for_members_only(owner, teammate, outsider, org, client_for):
    page = client_for(teammate, org).get("/org/members/").content.decode()
    assert owner.email in page and teammate.email in page
    # The outsider only ever sees their own current org.
    page = client_for(outsider, org).get("/org/members/").content.decode()
    assert owner.email not in page


def test_member_cannot_change_roles_server_side(owner, teammate, org, client_for):
    owner_membership = org.memberships.get(user=owner)
    client = client_for(teammate, org)
    response = client.post(f"/org/members/{owner_membership.pk}/role/", {"role": "member"})
    assert response.status_code == 403
    assert org.memberships.get(user=owner).role == Role.OWNER


def test_admin_cannot_touch_owners(owner, teammate, org, client_for):
    org.memberships.filter(user=teammate).update(role=Role.ADMIN)
    owner_membership = org.memberships.get(user=owner)
    client = client_for(teammate, org)
    assert (
        client.post(f"/org/members/{owner_membership.pk}/role/", {"role": "admin"}).status_code
        == 403
    )
    assert client.post(f"/org/members/{owner_membership.pk}/remove/").status_code == 403
    assert org.memberships.filter(user=owner, role=Role.OWNER).exists()


def test_owner_changes_a_role_and_it_is_audited(owner, teammate, org, client_for):
    membership = org.memberships.get(user=teammate)
    client_for(owner, org).post(f"/org/members/{membership.pk}/role/", {"role": "admin"})
    assert org.memberships.get(user=teammate).role == Role.ADMIN
    assert AuditLog.objects.filter(org=org, action="member.role_changed").exists()


def test_unknown_role_is_rejected(owner, teammate, org, client_for):
    membership = org.memberships.get(user=teammate)
    client_for(owner, org).post(f"/org/members/{membership.pk}/role/", {"role": "god"})
    assert org.memberships.get(user=teammate).role == Role.MEMBER


def test_other_orgs_membership_is_404(owner, outsider, outsider_org, org, client_for):
    theirs = outsider_org.memberships.get(user=outsider)
    client = client_for(owner, org)
    assert client.post(f"/org/members/{theirs.pk}/remove/").status_code == 404
    assert client.post(f"/org/members/{theirs.pk}/role/", {"role": "member"}).status_code == 404
    assert Membership.objects.filter(pk=theirs.pk).exists()


def test_admin_removes_a_member(owner, teammate, org, client_for):
    membership = org.memberships.get(user=teammate)
    client_for(owner, org).post(f"/org/members/{membership.pk}/remove/")
    assert not org.memberships.filter(user=teammate).exists()
    assert AuditLog.objects.filter(org=org, action="member.removed").exists()


def test_member_can_leave(teammate, org, client_for):
    membership = org.memberships.get(user=teammate)
    client_for(teammate, org).post(f"/org/members/{membership.pk}/remove/")
    assert not org.memberships.filter(user=teammate).exists()


def test_last_owner_cannot_leave_or_be_demoted(owner, org, client_for):
    membership = org.memberships.get(user=owner)
    client = client_for(owner, org)
    client.post(f"/org/members/{membership.pk}/remove/")
    client.post(f"/org/members/{membership.pk}/role/", {"role": "member"})
    assert org.memberships.get(user=owner).role == Role.OWNER
    with pytest.raises(Conflict):
        services.leave_org(org, owner)


@pytest.mark.django_db(transaction=True)
def test_two_owners_leaving_at_once_leave_one_owner(owner, teammate, org):
    org.memberships.filter(user=teammate).update(role=Role.OWNER)
    barrier = threading.Barrier(2)
    outcomes = []

    def leave(user):
        barrier.wait()
        try:
            services.leave_org(org, user)
            outcomes.append("left")
        except Conflict:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=leave, args=(u,)) for u in (owner, teammate)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["left", "refused"]
    assert org.memberships.filter(role=Role.OWNER).count() == 1


# --- Invitations -----------------------------------------------------------------------


def test_invitation_round_trip(owner, outsider, org, client_for):
    client_for(owner, org).post("/org/invitations/", {"email": outsider.email, "role": "member"})
    link = invite_link(outsider.email)
    invited = client_for(outsider)
    assert f"Join {org.name}" in invited.get(link).content.decode()
    assert invited.post(link).status_code == 302
    assert org.memberships.get(user=outsider).role == Role.MEMBER
    assert invited.get("/api/v1/account").json()["org"]["slug"] == org.slug
    # Single use: the same link is refused afterwards, for anyone.
    assert invited.post(link).status_code == 409
    assert AuditLog.objects.filter(org=org, action="member.joined").exists()


def test_expired_invitation_is_rejected(owner, outsider, org, client_for):
    client_for(owner, org).post("/org/invitations/", {"email": outsider.email, "role": "member"})
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client_for(outsider).post(invite_link(outsider.email))
    assert response.status_code == 400
    assert not org.memberships.filter(user=outsider).exists()


def test_link_past_its_signed_max_age_is_rejected(owner, outsider, org, client_for, settings):
    client_for(owner, org).post("/org/invitations/", {"email": outsider.email, "role": "member"})
    link = invite_link(outsider.email)
    settings.INVITATION_MAX_AGE_SECONDS = -1
    assert client_for(outsider).post(link).status_code == 400


@pytest.mark.parametrize(
    "key",
    [
        "garbage",
        signing.dumps({"i": 1, "n": "x"}, salt="another-salt"),
        signing.dumps({"i": 1, "n": "x"}, salt="portal.invitation"),
    ],
)
def test_forged_invitation_links_are_rejected(outsider, org, client_for, key):
    response = client_for(outsider).post(f"/invitations/{key}/")
    assert response.status_code == 404
    assert not org.memberships.filter(user=outsider).exists()


def test_invitation_for_someone_else_is_refused(owner, outsider, teammate, org, client_for):
    issued = services.invite_member(org, owner, "friend@example.com")
    link = f"/invitations/{issued.signed_key}/"
    assert client_for(outsider).post(link).status_code == 403
    assert Invitation.objects.get(pk=issued.invitation.pk).accepted_at is None


def test_revoked_invitation_is_rejected(owner, outsider, org, client_for):
    issued = services.invite_member(org, owner, outsider.email)
    client_for(owner, org).post(f"/org/invitations/{issued.invitation.pk}/revoke/")
    assert client_for(outsider).post(f"/invitations/{issued.signed_key}/").status_code == 409


def test_members_cannot_invite(teammate, org, client_for):
    response = client_for(teammate, org).post(
        "/org/invitations/", {"email": "x@example.com", "role": "member"}
    )
    assert response.status_code == 403
    assert not Invitation.objects.exists()


@pytest.mark.parametrize(
    "data", [{}, {"email": "nope", "role": "member"}, {"email": "a@b.co", "role": "owner"}]
)
def test_bad_invitations_create_nothing(owner, org, client_for, data):
    client_for(owner, org).post("/org/invitations/", data)
    assert not Invitation.objects.exists()


def test_an_invitation_whose_email_fails_leaves_no_invitation(owner, org, client_for):
    """A name stored before names were checked breaks the e-mail's subject header: the
    invitation must not exist without its e-mail (and the page must not be a 500)."""
    Organization.objects.filter(pk=org.pk).update(name="Acme\r\nBcc: victim@example.com")
    response = client_for(owner, org).post(
        "/org/invitations/", {"email": "friend@example.com", "role": "member"}
    )
    assert response.status_code == 302
    assert not Invitation.objects.exists()
    assert not AuditLog.objects.filter(org=org, action="invitation.created").exists()
    assert mail.outbox == []


def test_outsider_cannot_revoke_another_orgs_invitation(
    owner, outsider, outsider_org, org, client_for
):
    issued = services.invite_member(org, owner, "friend@example.com")
    response = client_for(outsider, outsider_org).post(
        f"/org/invitations/{issued.invitation.pk}/revoke/"
    )
    assert response.status_code == 404
    assert Invitation.objects.get(pk=issued.invitation.pk).revoked_at is None


# --- Tokens and audit pages ---------------------------------------------------------------


def test_token_page_rejects_bad_input(owner, org, client_for):
    client = client_for(owner, org)
    for data in [
        {},
        {"name": "", "scopes": ["read"]},
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "scopes": ["read"], "expires_days": "-1"},
    ]:
        assert client.post("/org/tokens/", data).status_code == 200
    assert not org.tokens.exists()


def test_members_cannot_see_or_make_tokens(teammate, org, client_for):
    client = client_for(teammate, org)
    assert client.get("/org/tokens/").status_code == 403
    assert client.post("/org/tokens/", {"name": "x", "scopes": ["read"]}).status_code == 403
    assert not org.tokens.exists()


def test_revoking_another_orgs_token_is_404(owner, outsider, outsider_org, org, client_for):
    token = services.issue_token(outsider_org, outsider, "theirs").token
    assert client_for(owner, org).post(f"/org/tokens/{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_audit_log_is_for_admins(owner, teammate, org, client_for):
    services.issue_token(org, owner, "ci")
    assert "token.created" in client_for(owner, org).get("/org/audit/").content.decode()
    assert client_for(teammate, org).get("/org/audit/").status_code == 403
