"""Spend caps on the billing page: owners set the org's cap and each token's, admins see
them, members and outsiders neither; bad amounts change nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import BillingAccount, TokenSpendCap
from portal import services
from portal.models import AuditLog, Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(org):
    from tests.conftest import make_user

    user = make_user("admin@example.com")
    org.memberships.create(user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def token(org, owner):
    return services.issue_token(org, owner, "ci").token


def cap_of(org) -> Decimal | None:
    account = BillingAccount.objects.filter(org=org).first()
    return account.spend_cap if account else None


def test_an_owner_sets_and_removes_the_org_cap(owner, org, client_for):
    client = client_for(owner, org)
    response = client.post("/billing/spend-cap/", {"cap": "125.50"})
    assert response.status_code == 303
    assert cap_of(org) == Decimal("125.50")
    assert AuditLog.objects.filter(org=org, action="billing.spend_cap_set").exists()
    page = client.get("/billing/").content.decode()
    assert "$125.5 per period" in page
    client.post("/billing/spend-cap/", {"cap": ""})
    assert cap_of(org) is None


@pytest.mark.parametrize("bad", ["abc", "-1", "1e400", "1.001", "NaN", "9" * 40])
def test_bad_caps_change_nothing(owner, org, client_for, bad):
    client = client_for(owner, org)
    client.post("/billing/spend-cap/", {"cap": "10"})
    response = client.post("/billing/spend-cap/", {"cap": bad}, follow=True)
    assert response.status_code == 200
    assert "Spend cap:" in response.content.decode()
    assert cap_of(org) == Decimal(10)


def test_an_owner_caps_one_token(owner, org, token, client_for):
    client = client_for(owner, org)
    client.post(f"/billing/tokens/{token.pk}/spend-cap/", {"cap": "5"})
    assert TokenSpendCap.objects.get(token=token).amount == Decimal(5)
    client.post(f"/billing/tokens/{token.pk}/spend-cap/", {"cap": ""})
    assert not TokenSpendCap.objects.exists()


def test_admins_see_the_caps_but_cannot_change_them(admin, org, token, client_for):
    client = client_for(admin, org)
    page = client.get("/billing/").content.decode()
    assert "Spend caps" in page and token.prefix in page
    assert client.post("/billing/spend-cap/", {"cap": "1"}).status_code == 403
    assert client.post(f"/billing/tokens/{token.pk}/spend-cap/", {"cap": "1"}).status_code == 403
    assert cap_of(org) is None and not TokenSpendCap.objects.exists()


def test_members_neither_see_nor_change_caps(teammate, org, token, client_for):
    client = client_for(teammate, org)
    assert "Spend caps" not in client.get("/billing/").content.decode()
    assert client.post("/billing/spend-cap/", {"cap": "1"}).status_code == 403
    assert cap_of(org) is None


def test_another_orgs_token_is_a_404(owner, org, outsider, outsider_org, client_for):
    theirs = services.issue_token(outsider_org, outsider, "theirs").token
    response = client_for(owner, org).post(f"/billing/tokens/{theirs.pk}/spend-cap/", {"cap": "1"})
    assert response.status_code == 404
    missing = client_for(owner, org).post("/billing/tokens/999999/spend-cap/", {"cap": "1"})
    assert missing.status_code == 404
    assert not TokenSpendCap.objects.exists()


def test_a_revoked_token_is_a_404(owner, org, token, client_for):
    services.revoke_token(org, owner, token.pk)
    response = client_for(owner, org).post(f"/billing/tokens/{token.pk}/spend-cap/", {"cap": "1"})
    assert response.status_code == 404


def test_caps_need_a_post_and_a_login(owner, org, client, client_for):
    assert client_for(owner, org).get("/billing/spend-cap/").status_code == 405
    response = client.post("/billing/spend-cap/", {"cap": "1"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
