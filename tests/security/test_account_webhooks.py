"""The account webhook: `GET`/`PUT /api/v1/webhooks/default` (issue #12, API.md "Outgoing
webhooks").

Owners and admins read and change it in the browser; tokens with `read` read it and no
token changes it; plain members get 403; an outsider only ever reaches their own org's
configuration (there is no org in the path). Every bad input is a 400 with a clear
message that changes nothing and audits nothing.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from portal import account_webhooks
from portal.models import AccountWebhook, AuditLog, Role
from tests.security.test_limits import assert_error

pytestmark = pytest.mark.django_db

API = "/api/v1/webhooks/default"
PUBLIC = "https://93.184.215.14/hooks/portal"  # an address literal: no DNS needed
OTHER_PUBLIC = "https://93.184.215.15/other"
ALL_EVENTS = ["billing.threshold", "model.deprecated"]
NONE = {"url": None, "events": ALL_EVENTS}


@pytest.fixture(autouse=True)
def _private_refused(settings):
    """As in production: webhooks may not point into our own network."""
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False


@pytest.fixture
def admin(org, teammate):
    org.memberships.filter(user=teammate).update(role=Role.ADMIN)
    return teammate


def put(client: Client, body, *, raw: bool = False):
    data = body if raw else json.dumps(body)
    return client.put(API, data=data, content_type="application/json")


def config_of(org) -> dict:
    return account_webhooks.get_account_webhook(org).as_dict()


def changes(org) -> int:
    return AuditLog.objects.filter(org=org, action="org.account_webhook_changed").count()


# --- Reading ---------------------------------------------------------------------------


def test_none_is_configured_at_first(org, owner, client_for):
    response = client_for(owner, org).get(API)
    assert response.status_code == 200
    assert response.json() == NONE


def test_owner_sets_it_and_reads_it_back_and_it_is_audited(org, owner, client_for):
    client = client_for(owner, org)
    response = put(client, {"url": PUBLIC, "events": ["billing.threshold"]})
    assert response.status_code == 200, response.content
    assert response.json() == {"url": PUBLIC, "events": ["billing.threshold"]}
    assert client.get(API).json() == {"url": PUBLIC, "events": ["billing.threshold"]}
    entry = AuditLog.objects.get(org=org, action="org.account_webhook_changed")
    assert entry.actor == owner
    assert entry.data == {
        "old": NONE,
        "new": {"url": PUBLIC, "events": ["billing.threshold"]},
    }
    # The same configuration again changes nothing and audits nothing.
    assert put(client, {"url": PUBLIC, "events": ["billing.threshold"]}).status_code == 200
    assert changes(org) == 1


def test_events_default_to_all_and_come_back_in_canonical_order(org, owner, client_for):
    client = client_for(owner, org)
    assert put(client, {"url": PUBLIC}).json() == {"url": PUBLIC, "events": ALL_EVENTS}
    reordered = {"url": PUBLIC, "events": ["model.deprecated", "billing.threshold"]}
    assert put(client, reordered).json() == {"url": PUBLIC, "events": ALL_EVENTS}
    assert put(client, {"url": PUBLIC, "events": None}).json()["events"] == ALL_EVENTS
    # An empty subset is a subset: the URL stays, no event goes to it.
    assert put(client, {"url": PUBLIC, "events": []}).json() == {"url": PUBLIC, "events": []}
    assert account_webhooks.webhook_url_for(org.pk, "billing.threshold") is None


@pytest.mark.parametrize("empty", [None, ""])
def test_null_or_empty_url_removes_it(org, owner, client_for, empty):
    client = client_for(owner, org)
    put(client, {"url": PUBLIC})
    assert account_webhooks.webhook_url_for(org.pk, "billing.threshold") == PUBLIC
    response = put(client, {"url": empty, "events": ALL_EVENTS})
    assert response.status_code == 200
    assert response.json() == NONE
    assert client.get(API).json() == NONE
    assert account_webhooks.webhook_url_for(org.pk, "billing.threshold") is None
    assert changes(org) == 2


def test_the_url_is_stored_in_its_normal_form(org, owner, client_for):
    response = put(client_for(owner, org), {"url": "HTTPS://93.184.215.14:443/Hook?a=1"})
    assert response.json()["url"] == "https://93.184.215.14/Hook?a=1"


# --- Who ---------------------------------------------------------------------------------


def test_an_admin_reads_and_changes_it(org, admin, client_for):
    client = client_for(admin, org)
    assert client.get(API).json() == NONE
    assert put(client, {"url": PUBLIC}).status_code == 200
    assert AuditLog.objects.get(action="org.account_webhook_changed").actor == admin


def test_a_plain_member_gets_403_on_both_and_nothing_changes(org, owner, teammate, client_for):
    put(client_for(owner, org), {"url": PUBLIC})
    member = client_for(teammate, org)
    response = member.get(API)
    assert_error(response, 403, "permission_error")
    assert PUBLIC not in response.content.decode()
    assert_error(put(member, {"url": OTHER_PUBLIC}), 403, "permission_error")
    assert config_of(org)["url"] == PUBLIC
    assert changes(org) == 1


def test_an_outsider_only_ever_reaches_their_own_org(
    org, owner, outsider, outsider_org, client_for
):
    put(client_for(owner, org), {"url": PUBLIC})
    # The team's id forced into the outsider's session: not a member, so not that org.
    intruder = client_for(outsider, org)
    response = intruder.get(API)
    assert response.json() == NONE
    assert put(intruder, {"url": OTHER_PUBLIC, "events": []}).status_code == 200
    assert config_of(org) == {"url": PUBLIC, "events": ALL_EVENTS}
    [changed] = AuditLog.objects.filter(action="org.account_webhook_changed", actor=outsider)
    assert changed.org != org and changed.org.memberships.filter(user=outsider).exists()
    assert client_for(outsider, outsider_org).get(API).json() == NONE  # their team: untouched


def test_a_read_token_reads_its_own_orgs_webhook(
    org, owner, outsider_org, client_for, token_for, api_client
):
    put(client_for(owner, org), {"url": PUBLIC})
    assert api_client(token_for(org, scopes=["read"])).get(API).json() == {
        "url": PUBLIC,
        "events": ALL_EVENTS,
    }
    assert api_client(token_for(outsider_org, scopes=["read"])).get(API).json() == NONE


def test_a_token_without_read_cannot_read_it(org, token_for, api_client):
    error = assert_error(
        api_client(token_for(org, scopes=["predict"])).get(API), 403, "permission_error"
    )
    assert "read" in error["message"]


def test_no_token_changes_it_whatever_its_scopes(org, owner, client_for, token_for, api_client):
    put(client_for(owner, org), {"url": PUBLIC})
    for scopes in (["read"], ["predict"], ["predict", "read"]):
        client = api_client(token_for(org, scopes=scopes))
        error = assert_error(put(client, {"url": OTHER_PUBLIC}), 403, "permission_error")
        assert "signed in" in error["message"]
    assert config_of(org)["url"] == PUBLIC
    assert changes(org) == 1


def test_anonymous_gets_401(db):
    assert_error(Client().get(API), 401, "authentication_error")
    assert_error(put(Client(), {"url": PUBLIC}), 401, "authentication_error")
    assert not AccountWebhook.objects.exists()


def test_a_browser_put_needs_a_csrf_token(org, owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert_error(put(client, {"url": PUBLIC}), 403, "permission_error")
    assert not AccountWebhook.objects.exists()


# --- Bad input -------------------------------------------------------------------------

HUGE = "https://93.184.215.14/" + "a" * 2000


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        (b"", None, "JSON object"),
        ({}, None, "JSON object"),
        ([], None, "JSON object"),
        ([{"url": PUBLIC}], None, "JSON object"),
        ("https://93.184.215.14/x", None, "JSON object"),
        (None, None, "JSON object"),
        ({"events": ["billing.threshold"]}, "url", "url is required"),
        ({"url": PUBLIC, "secret": "x"}, "secret", "Unknown field"),
        ({"url": 123}, "url", "string"),
        ({"url": ["https://93.184.215.14/x"]}, "url", "string"),
        ({"url": {"href": PUBLIC}}, "url", "string"),
        ({"url": True}, "url", "string"),
        ({"url": PUBLIC, "events": "billing.threshold"}, "events", "list"),
        ({"url": PUBLIC, "events": {"billing.threshold": True}}, "events", "list"),
        ({"url": PUBLIC, "events": [1]}, "events", "list"),
        ({"url": PUBLIC, "events": [["billing.threshold"]]}, "events", "list"),
        ({"url": PUBLIC, "events": ["billing.threshold", "prediction.completed"]}, "events",
         "Unknown events: prediction.completed"),
        ({"url": PUBLIC, "events": ["Billing.Threshold"]}, "events", "Unknown events"),
        ({"url": PUBLIC, "events": ["billing.threshold", "billing.threshold"]}, "events",
         "more than once"),
        ({"url": HUGE}, "url", "too long"),
        ({"url": "ftp://93.184.215.14/x"}, "url", "plain http(s) URL"),
        ({"url": "https://user:pw@93.184.215.14/x"}, "url", "plain http(s) URL"),
        ({"url": "http://127.0.0.1:8000/hook"}, "url", "public address"),
        ({"url": "http://10.0.0.7/hook"}, "url", "public address"),
        ({"url": "http://[::1]/hook"}, "url", "public address"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url", "public address"),
        ({"url": "http://2130706433/"}, "url", "four decimal numbers"),
    ],
)  # fmt: skip
def test_bad_input_is_a_400_that_changes_nothing(org, owner, client_for, body, param, says):
    client = client_for(owner, org)
    put(client, {"url": OTHER_PUBLIC, "events": ["model.deprecated"]})
    before = config_of(org)
    response = put(client, body, raw=isinstance(body, bytes))
    error = assert_error(response, 400, "invalid_request_error")
    assert error["param"] == param
    assert says in error["message"], error
    assert config_of(org) == before
    assert changes(org) == 1


@pytest.mark.parametrize(
    "raw",
    [b'{"url": ', b"{'url': null}", b'{"url": NaN}', b"\xff\xfe", b'{"url": "a\\u0000"}'],
)
def test_malformed_json_is_a_400_that_changes_nothing(org, owner, client_for, raw):
    client = client_for(owner, org)
    put(client, {"url": OTHER_PUBLIC})
    before = config_of(org)
    response = put(client, raw, raw=True)
    assert_error(response, 400, "invalid_request_error")
    assert config_of(org) == before
    assert changes(org) == 1


def test_a_form_body_is_refused(org, owner, client_for):
    form = "application/x-www-form-urlencoded"
    response = client_for(owner, org).put(API, data="url=https%3A%2F%2Fx.test", content_type=form)
    assert_error(response, 415, "invalid_request_error")
    assert not AccountWebhook.objects.filter(org=org).exclude(url="").exists()


# --- Documented ------------------------------------------------------------------------


def test_it_is_in_the_openapi_schema(db):
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operations = schema["paths"]["/api/v1/webhooks/default"]
    assert {"get", "put"} <= set(operations)
    assert operations["put"]["operationId"] == "webhooks_default_update"
    assert "requestBody" in operations["put"]
