"""A token's row comes from the process's cache after its first use (no query), yet the
secret is checked on every request, and revocation, expiry, scope and allowlist changes,
and the creator losing the right to hold tokens all take effect on the next request."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal import hot, hotcache, services
from portal.models import ApiToken, Membership, Role, TokenScope
from portal.tokens import find_active_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def issued(org, owner) -> services.IssuedToken:
    return services.issue_token(org, owner, "ci")


def _queries(plaintext: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert find_active_token(plaintext) is not None
    return len(captured)


def test_a_second_resolution_makes_no_query(issued):
    assert _queries(issued.plaintext) == 2  # the row, then last_used_at
    assert _queries(issued.plaintext) == 0


def test_the_secret_is_checked_on_every_request(issued):
    assert find_active_token(issued.plaintext) is not None
    forged = issued.plaintext[:-1] + ("A" if issued.plaintext[-1] != "A" else "B")
    assert find_active_token(forged) is None
    assert find_active_token(issued.plaintext) is not None


def test_a_revoked_token_is_refused_on_the_next_request(org, owner, issued, api_client):
    client = api_client(issued.plaintext)
    assert client.get("/api/v1/account").status_code == 200
    services.revoke_token(org, owner, issued.token.pk)
    assert client.get("/api/v1/account").status_code == 401


def test_a_token_deleted_in_admin_is_refused_on_the_next_request(issued):
    assert find_active_token(issued.plaintext) is not None
    ApiToken.objects.get(pk=issued.token.pk).delete()
    assert find_active_token(issued.plaintext) is None


def test_a_token_expires_without_a_write(org, owner):
    issued = services.issue_token(
        org, owner, "short", expires_at=timezone.now() + timedelta(seconds=1)
    )
    assert find_active_token(issued.plaintext) is not None
    time.sleep(1.1)
    assert find_active_token(issued.plaintext) is None


def test_scope_and_allowlist_changes_are_seen_on_the_next_request(issued):
    assert TokenScope.PREDICT in find_active_token(issued.plaintext).scopes
    row = ApiToken.objects.get(pk=issued.token.pk)
    row.scopes = [TokenScope.READ]
    row.allowed_models = ["echo"]
    row.save()
    token = find_active_token(issued.plaintext)
    assert token.scopes == [TokenScope.READ]
    assert not token.allows_model("other")


def test_a_demoted_creators_tokens_are_refused_at_once(org, owner, teammate):
    membership = Membership.objects.get(org=org, user=teammate)
    services.change_role(org, owner, membership.pk, Role.ADMIN)
    issued = services.issue_token(org, teammate, "teammate's")
    assert find_active_token(issued.plaintext) is not None
    services.change_role(org, owner, membership.pk, Role.MEMBER)
    assert find_active_token(issued.plaintext) is None


def test_a_membership_changed_in_admin_is_seen_at_once(org, owner, teammate):
    membership = Membership.objects.get(org=org, user=teammate)
    membership.role = Role.ADMIN
    membership.save()
    issued = services.issue_token(org, teammate, "teammate's")
    assert find_active_token(issued.plaintext) is not None
    membership.role = Role.MEMBER
    membership.save()  # as admin saves it: no revocation, the membership rule refuses it
    assert find_active_token(issued.plaintext) is None


def test_a_deactivated_creators_tokens_are_refused_at_once(owner, issued):
    assert find_active_token(issued.plaintext) is not None
    user = get_user_model().objects.get(pk=owner.pk)
    user.is_active = False
    user.save()
    assert find_active_token(issued.plaintext) is None


def test_an_org_change_is_seen_through_the_token(org, owner, issued):
    assert find_active_token(issued.plaintext).org.webhook_secret == org.webhook_secret
    secret = services.rotate_webhook_secret(org, owner)
    assert find_active_token(issued.plaintext).org.webhook_secret == secret
    services.set_prediction_retention(org, owner, timedelta(days=3))
    assert find_active_token(issued.plaintext).org.prediction_retention == timedelta(days=3)


def test_a_login_does_not_empty_the_cache(owner, issued, client):
    before = hotcache.stamp(hot.TOKENS_SCOPE)
    from tests.conftest import PASSWORD

    assert client.login(username=owner.username, password=PASSWORD)
    assert hotcache.stamp(hot.TOKENS_SCOPE) == before


def test_without_redis_tokens_are_read_from_the_database(settings, org, owner, issued):
    from tests.livestack import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.REDIS_OUTAGE_TOLERANCE_SECONDS = 0
    assert find_active_token(issued.plaintext) is not None
    services.revoke_token(org, owner, issued.token.pk)
    assert find_active_token(issued.plaintext) is None
