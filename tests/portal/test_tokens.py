from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.utils import timezone

from portal import services
from portal.auth import resolve_bearer, resolve_session, still_valid
from portal.models import ApiToken, AuditLog, Membership, Role
from portal.tokens import TOKEN_PATTERN, find_active_token
from tests.migration_steps import run_python_step

pytestmark = pytest.mark.django_db


def test_issued_token_has_documented_format_and_only_its_digest_is_stored(org, owner):
    issued = services.issue_token(org, owner, "ci")
    assert TOKEN_PATTERN.match(issued.plaintext)
    row = ApiToken.objects.get(pk=issued.token.pk)
    assert issued.plaintext.split("_")[1] == row.prefix
    assert issued.plaintext not in row.digest
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM portal_apitoken")
        dumped = repr(cursor.fetchall())
    assert issued.plaintext not in dumped
    assert issued.plaintext.split("_")[2] not in dumped


def test_valid_token_resolves_to_its_org(org, owner):
    issued = services.issue_token(org, owner, "ci")
    assert find_active_token(issued.plaintext).org == org


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],  # truncated
        lambda t: t + "x",  # too long
        lambda t: t.replace("mp_", "pk_", 1),  # wrong product prefix
        lambda t: t[:3] + "zzzzzzzz" + t[11:],  # unknown prefix, same secret
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # right prefix, wrong secret
        lambda t: "",
        lambda t: "mp__",
    ],
)
def test_malformed_or_forged_tokens_are_rejected(org, owner, mangle):
    issued = services.issue_token(org, owner, "ci")
    assert find_active_token(mangle(issued.plaintext)) is None


def test_revoked_token_is_rejected_on_the_next_request(org, owner, api_client):
    issued = services.issue_token(org, owner, "ci")
    client = api_client(issued.plaintext)
    assert client.get("/api/v1/account").status_code == 200
    services.revoke_token(org, owner, issued.token.pk)
    response = client.get("/api/v1/account")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_expired_token_is_rejected(org, owner, api_client):
    issued = services.issue_token(
        org, owner, "short", expires_at=timezone.now() + timedelta(minutes=1)
    )
    ApiToken.objects.filter(pk=issued.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert api_client(issued.plaintext).get("/api/v1/account").status_code == 401


def test_last_used_at_is_written_at_most_once_a_minute(org, owner, api_client):
    issued = services.issue_token(org, owner, "ci")
    client = api_client(issued.plaintext)
    client.get("/api/v1/account")
    first = ApiToken.objects.get(pk=issued.token.pk).last_used_at
    assert first is not None
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        client.get("/api/v1/account")
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == first
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    ApiToken.objects.filter(pk=issued.token.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/v1/account")
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at > first


def test_only_admins_issue_and_revoke_tokens(org, owner, teammate):
    from portal.errors import NotAllowed

    with pytest.raises(NotAllowed):
        services.issue_token(org, teammate, "nope")
    issued = services.issue_token(org, owner, "ci")
    with pytest.raises(NotAllowed):
        services.revoke_token(org, teammate, issued.token.pk)


def test_outsider_cannot_revoke_another_orgs_token(org, owner, outsider, outsider_org):
    from portal.errors import NotFound

    issued = services.issue_token(org, owner, "ci")
    with pytest.raises(NotFound):
        services.revoke_token(outsider_org, outsider, issued.token.pk)
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is None


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "scopes": ["admin"]}, "scopes"),
        ({"name": "ok", "scopes": [" "]}, "scopes"),
        ({"name": "ok", "expires_at": timezone.now() - timedelta(days=1)}, "expires_at"),
    ],
)
def test_bad_token_requests_are_rejected_and_create_nothing(org, owner, kwargs, param):
    from portal.errors import InvalidInput

    name = kwargs.pop("name")
    with pytest.raises(InvalidInput) as excinfo:
        services.issue_token(org, owner, name, **kwargs)
    assert excinfo.value.param == param
    assert not ApiToken.objects.exists()


def test_a_resolved_principal_stays_valid_only_while_its_token_is_active(org, owner):
    """Open streams re-check their caller with `still_valid`: revoked or expired is gone."""
    issued = services.issue_token(org, owner, "stream")
    principal = resolve_bearer(f"Bearer {issued.plaintext}")
    assert still_valid(principal)
    ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now())
    assert not still_valid(principal)
    ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=None)
    services.revoke_token(org, owner, issued.token.pk)
    assert not still_valid(principal)


def test_a_session_principal_stays_valid_only_while_a_member(org, teammate):
    principal = resolve_session(teammate, org.pk)
    assert principal.org == org and still_valid(principal)
    Membership.objects.filter(user=teammate, org=org).delete()
    assert not still_valid(principal)


def test_a_deactivated_users_session_principal_is_no_longer_valid(org, teammate):
    principal = resolve_session(teammate, org.pk)
    type(teammate).objects.filter(pk=teammate.pk).update(is_active=False)
    assert not still_valid(principal)


def test_tokens_of_people_who_lost_the_right_before_the_fix_are_revoked(
    org, owner, teammate, outsider
):
    """Before revocation came with removal and demotion, such tokens lived on."""
    mate = org.memberships.get(user=teammate)
    Membership.objects.filter(pk=mate.pk).update(role=Role.ADMIN)
    gone = org.memberships.create(user=outsider, role=Role.ADMIN)
    demoted = services.issue_token(org, teammate, "demoted").token
    departed = services.issue_token(org, outsider, "departed").token
    operators = services.issue_token(org, None, "cli").token
    owners = services.issue_token(org, owner, "owner").token
    # What the old services did: the membership changed or went, the tokens stayed.
    Membership.objects.filter(pk=mate.pk).update(role=Role.MEMBER)
    gone.delete()
    run_python_step("portal", "revoke_tokens_without_authority")(django_apps, None)
    revoked = set(ApiToken.objects.filter(revoked_at__isnull=False).values_list("pk", flat=True))
    assert revoked == {demoted.pk, departed.pk}
    assert {owners.pk, operators.pk}.isdisjoint(revoked)
    rows = AuditLog.objects.filter(org=org, action="token.revoked")
    assert sorted(row.target for row in rows) == sorted(
        f"{t.name} (mp_{t.prefix})" for t in (demoted, departed)
    )
    assert {row.data["reason"] for row in rows} == {"creator.no_longer_admin"}
