"""Service-layer rules an attacker could otherwise walk around (issue #11, items 5 to 8)."""

from __future__ import annotations

import pytest

from portal import services
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
