"""Who sees and rotates the webhook signing secret (issue #11, item 12).

Owners and admins, on the settings page and with the session on the API; tokens with
`read`. Plain members get 403. Another org's secret is never reachable: the page and the
endpoint always act on the caller's own org.
"""

from __future__ import annotations

import pytest
from django.test import Client

from portal.models import AuditLog, Role
from tests.security.test_limits import assert_error

pytestmark = pytest.mark.django_db

PAGE = "/org/settings/"
ROTATE = "/org/settings/webhook-secret/rotate/"
API = "/api/v1/webhooks/default/secret"


def secret_of(org) -> str:
    org.refresh_from_db()
    return org.webhook_secret


@pytest.fixture
def admin(org, teammate):
    org.memberships.filter(user=teammate).update(role=Role.ADMIN)
    return teammate


# --- The settings page -----------------------------------------------------------------


def test_owner_and_admin_see_the_secret_on_the_settings_page(org, owner, admin, client_for):
    for user in (owner, admin):
        response = client_for(user, org).get(PAGE)
        assert response.status_code == 200
        assert secret_of(org) in response.content.decode()
        assert response["Cache-Control"] == "no-store"
    # Linked from the org navigation.
    assert f'href="{PAGE}"' in client_for(owner, org).get("/dashboard/").content.decode()


def test_a_plain_member_gets_403_and_no_link(org, teammate, client_for):
    client = client_for(teammate, org)
    response = client.get(PAGE)
    assert response.status_code == 403
    assert secret_of(org) not in response.content.decode()
    assert f'href="{PAGE}"' not in client.get("/dashboard/").content.decode()


def test_an_outsider_only_ever_sees_their_own_org(org, outsider, outsider_org, client_for):
    # Even with the team's id forced into the session: not a member there, so not that org.
    client = client_for(outsider, org)
    body = client.get(PAGE).content.decode()
    assert secret_of(org) not in body
    assert secret_of(outsider_org) in client_for(outsider, outsider_org).get(PAGE).content.decode()


def test_owner_rotates_the_secret_with_csrf_and_it_is_audited(org, owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    session = client.session
    session["current_org_id"] = org.pk
    session.save()
    old = secret_of(org)
    assert client.post(ROTATE).status_code == 403  # no CSRF token
    assert secret_of(org) == old
    client.get(PAGE)
    response = client.post(ROTATE, {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert response.status_code == 302 and response["Location"] == PAGE
    new = secret_of(org)
    assert new != old and new.startswith("whsec_")
    entry = AuditLog.objects.get(org=org, action="org.webhook_secret_rotated")
    assert entry.actor == owner
    assert new not in str(entry.data) + entry.target and old not in str(entry.data)
    assert new in client.get(PAGE).content.decode()


def test_a_member_cannot_rotate_and_an_outsider_rotates_only_their_own(
    org, teammate, outsider, client_for
):
    old = secret_of(org)
    assert client_for(teammate, org).post(ROTATE).status_code == 403
    # The team's id forced into the outsider's session: it falls back to an org of theirs.
    assert client_for(outsider, org).post(ROTATE).status_code == 302
    assert secret_of(org) == old
    rotated = AuditLog.objects.get(action="org.webhook_secret_rotated")
    assert rotated.actor == outsider and rotated.org != org
    assert rotated.org.memberships.filter(user=outsider).exists()


# --- GET /api/v1/webhooks/default/secret ---------------------------------------------


def test_a_read_token_gets_its_own_orgs_secret(org, outsider_org, token_for, api_client):
    response = api_client(token_for(org, scopes=["read"])).get(API)
    assert response.status_code == 200
    assert response.json() == {"key": secret_of(org)}
    assert response["Cache-Control"] == "no-store"
    other = api_client(token_for(outsider_org, scopes=["read"])).get(API)
    assert other.json() == {"key": secret_of(outsider_org)}


def test_a_token_without_read_gets_403(org, token_for, api_client):
    response = api_client(token_for(org, scopes=["predict"])).get(API)
    error = assert_error(response, 403, "permission_error")
    assert secret_of(org) not in response.content.decode()
    assert "read" in error["message"]


def test_anonymous_gets_401(db):
    assert_error(Client().get(API), 401, "authentication_error")


def test_in_the_browser_only_owners_and_admins_get_it(org, owner, teammate, client_for):
    member = client_for(teammate, org).get(API)
    assert_error(member, 403, "permission_error")
    assert secret_of(org) not in member.content.decode()
    assert client_for(owner, org).get(API).json() == {"key": secret_of(org)}
    org.memberships.filter(user=teammate).update(role=Role.ADMIN)
    assert client_for(teammate, org).get(API).json() == {"key": secret_of(org)}
