"""The API tokens page: a new secret shown once after a redirect, a first call to paste,
and a confirmation step before revoking."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from models_hub.demo import load_demo_catalog
from portal import services
from portal.models import ApiToken

pytestmark = pytest.mark.django_db

SECRET = re.compile(r"mp_[a-z0-9]{8}_[A-Za-z0-9]{40}")
FORM = {"name": "ci", "scopes": ["predict", "read"]}


def without_csrf(body: bytes) -> bytes:
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", body)


def secrets_in(client: Client) -> list[str]:
    return SECRET.findall(client.get("/org/tokens/").content.decode())


def test_creating_a_token_redirects_and_a_reload_makes_no_second_one(owner, org, client_for):
    client = client_for(owner, org)
    response = client.post("/org/tokens/", FORM)
    assert response.status_code == 303
    assert response["Location"] == "/org/tokens/"  # the secret never travels in a URL
    page = client.get("/org/tokens/")
    assert page["Cache-Control"] == "no-store"
    [secret] = set(SECRET.findall(page.content.decode()))
    assert secrets_in(client) == []  # a reload: gone
    assert ApiToken.objects.filter(org=org).count() == 1
    assert client.get("/api/v1/account", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200


def test_invalid_input_answers_the_form_and_issues_nothing(owner, org, client_for):
    response = client_for(owner, org).post("/org/tokens/", {"name": "", "scopes": ["read"]})
    assert response.status_code == 200
    assert not ApiToken.objects.filter(org=org).exists()


def test_the_secret_is_shown_only_in_the_org_it_belongs_to(owner, org, client_for):
    client = client_for(owner, org)
    client.post("/org/tokens/", FORM)
    personal = owner.memberships.exclude(org=org).get().org
    assert client.post("/orgs/switch/", {"org": personal.slug})["Location"] == "/dashboard/"
    assert secrets_in(client) == []
    client.post("/orgs/switch/", {"org": org.slug})
    assert secrets_in(client) == []  # dropped, not kept for later


def test_first_call_runs_a_real_model_with_the_token_from_the_environment(owner, org, client_for):
    catalog = {listing.slug for listing in load_demo_catalog()}
    assert "echo" in catalog and len(catalog) > 1
    client = client_for(owner, org)
    client.post("/org/tokens/", FORM)
    page = client.get("/org/tokens/").content.decode()
    snippet = re.search(r'<code id="first-call"[^>]*>(.*?)</code>', page, re.DOTALL).group(1)
    assert "$MODEL_PORTAL_TOKEN" in snippet  # the name every snippet on the site uses
    assert not SECRET.search(snippet)
    model = re.search(r"&quot;model&quot;: ?&quot;([\w-]+)&quot;", snippet).group(1)
    assert model in catalog - {"echo"}
    assert 'class="copy" data-target="new-token"' in page


def test_first_call_respects_the_tokens_allowed_models(owner, org, client_for):
    load_demo_catalog()
    client = client_for(owner, org)
    client.post("/org/tokens/", {**FORM, "allowed_models": "echo"})
    page = client.get("/org/tokens/").content.decode()
    assert "&quot;model&quot;: &quot;echo&quot;" in page


def test_a_token_without_the_predict_scope_gets_no_prediction_snippet(owner, org, client_for):
    load_demo_catalog()
    client = client_for(owner, org)
    client.post("/org/tokens/", {"name": "reader", "scopes": ["read"]})
    page = client.get("/org/tokens/").content.decode()
    assert SECRET.search(page)
    assert 'id="first-call"' not in page


# --- Revoking asks first --------------------------------------------------------------


def test_revoke_asks_for_confirmation_and_only_the_post_revokes(owner, org, client_for):
    token = services.issue_token(org, owner, "laptop").token
    client = client_for(owner, org)
    listing = client.get("/org/tokens/").content.decode()
    assert f'href="/org/tokens/{token.pk}/revoke/"' in listing
    page = client.get(f"/org/tokens/{token.pk}/revoke/")
    assert page.status_code == 200
    assert "laptop" in page.content.decode() and "Revoke token" in page.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is None
    response = client.post(f"/org/tokens/{token.pk}/revoke/")
    assert response.status_code == 302 and response["Location"] == "/org/tokens/"
    token.refresh_from_db()
    assert token.revoked_at is not None
    again = client.get(f"/org/tokens/{token.pk}/revoke/").content.decode()
    assert "nothing to revoke" in again and "Revoke token" not in again


def test_teammates_cannot_reach_the_confirmation(owner, teammate, org, client_for):
    token = services.issue_token(org, owner, "laptop").token
    assert client_for(teammate, org).get(f"/org/tokens/{token.pk}/revoke/").status_code == 403


def test_another_orgs_token_confirmation_is_404_like_a_missing_one(
    owner, outsider, outsider_org, org, client_for
):
    token = services.issue_token(outsider_org, outsider, "theirs").token
    client = client_for(owner, org)
    theirs = client.get(f"/org/tokens/{token.pk}/revoke/")
    missing = client.get("/org/tokens/987654321/revoke/")
    assert theirs.status_code == missing.status_code == 404
    assert without_csrf(theirs.content) == without_csrf(missing.content)
    assert "theirs" not in theirs.content.decode()
