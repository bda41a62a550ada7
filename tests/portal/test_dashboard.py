"""The dashboard (issue #15): recent predictions, usage this period, a model to try, the
right words for whose workspace it is; workspaces renamed by owners and admins."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.template import Context, Template

from inference.models import Prediction, Status
from models_hub.models import ListingStatus, ModelListing, Task, Visibility
from models_hub.schemas import text_generation_schema
from portal import services
from portal.errors import InvalidInput
from portal.models import AuditLog, Organization, Role

pytestmark = pytest.mark.django_db


def listing(slug: str, source: str) -> ModelListing:
    return ModelListing.objects.create(
        slug=slug,
        name=slug.title(),
        summary=f"Summary of {slug}",
        task=Task.TEXT_GENERATION,
        source=source,
        status=ListingStatus.PUBLISHED,
        visibility=Visibility.PUBLIC,
        input_schema=text_generation_schema(max_new_tokens=32),
        example_input={"prompt": "hello"},
    )


def personal(user) -> Organization:
    return Organization.objects.get(memberships__user=user, memberships__role=Role.OWNER,
                                    is_personal=True)  # fmt: skip


# --- The dashboard ----------------------------------------------------------------------


def test_dashboard_shows_recent_predictions_usage_and_a_real_model_to_try(
    owner, org, outsider_org, client_for
):
    echo = listing("echo", "builtin:echo")
    real = listing("zephyr", "hf:acme/zephyr")
    mine = Prediction.objects.create(org=org, model=real, input={}, status=Status.SUCCEEDED)
    theirs = Prediction.objects.create(org=outsider_org, model=echo, input={})
    response = client_for(owner, org).get("/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert [p.id for p in response.context["recent"]] == [mine.id]
    assert theirs.id not in html
    assert response.context["try_model"] == real  # echo is never the model to try
    assert 'href="/models/zephyr/#playground"' in html
    assert "Usage this period" in html
    assert f'<time datetime="{mine.created_at.isoformat()}" data-local>' in html


def test_the_owner_is_told_it_is_their_personal_workspace(owner, client_for):
    html = client_for(owner).get("/dashboard/").content.decode()
    assert "your personal workspace" in html
    assert "Invite your team" in html
    assert "Rename this workspace" in html


def test_a_member_of_someone_elses_workspace_is_not_told_it_is_theirs(owner, teammate, client_for):
    workspace = personal(owner)
    workspace.memberships.create(user=teammate, role=Role.MEMBER)
    html = client_for(teammate, workspace).get("/dashboard/").content.decode()
    assert "your personal workspace" not in html
    assert "member of this personal workspace" in html
    # No invitations they cannot send, no rename they cannot do, no token page link.
    assert "Invite your team" not in html
    assert "Rename this workspace" not in html
    assert "/org/tokens/" not in html


def test_a_team_member_sees_an_organization(org, teammate, client_for):
    html = client_for(teammate, org).get("/dashboard/").content.decode()
    assert "member of this organization" in html
    assert "Invite your team" not in html


# --- Dates ------------------------------------------------------------------------------


def test_when_shows_local_time_with_the_zone_and_the_iso_instant(settings):
    moment = datetime(2026, 11, 30, 14, 5, 9, tzinfo=UTC)
    html = Template("{% load dates %}{{ moment|when }}|{{ none|when }}").render(
        Context({"moment": moment, "none": None})
    )
    assert html == (
        '<time datetime="2026-11-30T14:05:09+00:00" data-local>2026-11-30 14:05 UTC</time>|'
    )


# --- Renaming a workspace ---------------------------------------------------------------


def page(response, slug: str) -> str:
    """The body, without the per-render CSRF token and with the slug asked for masked."""
    text = re.sub(r'value="[^"]*"', "", response.content.decode())
    return text.replace(slug, "<slug>")


def test_the_owner_renames_a_team_workspace(owner, org, client_for):
    response = client_for(owner, org).post(f"/orgs/{org.slug}/rename/", {"name": "  Acme Labs "})
    assert response.status_code == 302
    org.refresh_from_db()
    assert org.name == "Acme Labs"
    assert org.slug == "acme-ai"  # links and API clients keep working
    entry = AuditLog.objects.get(org=org, action="org.renamed")
    assert entry.data == {"old": "Acme AI", "new": "Acme Labs"}


def test_the_owner_renames_their_personal_workspace(owner, client_for):
    workspace = personal(owner)
    client_for(owner).post(f"/orgs/{workspace.slug}/rename/", {"name": "Lab"})
    workspace.refresh_from_db()
    assert workspace.name == "Lab"


def test_an_admin_may_rename(owner, teammate, org, client_for):
    org.memberships.filter(user=teammate).update(role=Role.ADMIN)
    client_for(teammate, org).post(f"/orgs/{org.slug}/rename/", {"name": "By admin"})
    org.refresh_from_db()
    assert org.name == "By admin"


def test_a_plain_teammate_gets_403(teammate, org, client_for):
    response = client_for(teammate, org).post(f"/orgs/{org.slug}/rename/", {"name": "Mine"})
    assert response.status_code == 403
    org.refresh_from_db()
    assert org.name == "Acme AI"


def test_an_outsider_gets_the_404_of_a_missing_workspace(outsider, outsider_org, org, client_for):
    client = client_for(outsider, outsider_org)
    real = client.post(f"/orgs/{org.slug}/rename/", {"name": "Pwned"})
    missing = client.post("/orgs/no-such-org/rename/", {"name": "Pwned"})
    assert real.status_code == missing.status_code == 404
    assert page(real, org.slug) == page(missing, "no-such-org")
    org.refresh_from_db()
    assert org.name == "Acme AI"


def test_rename_takes_post_only_and_a_csrf_token(owner, org, client_for):
    from django.test import Client

    assert client_for(owner, org).get(f"/orgs/{org.slug}/rename/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner)
    assert strict.post(f"/orgs/{org.slug}/rename/", {"name": "x"}).status_code == 403


@pytest.mark.parametrize("name", ["", "   ", "x" * 121, "two\nlines", "tab\there"])
def test_bad_names_change_nothing_and_say_why(owner, org, client_for, name):
    client = client_for(owner, org)
    response = client.post(f"/orgs/{org.slug}/rename/", {"name": name}, follow=True)
    assert response.status_code == 200
    org.refresh_from_db()
    assert org.name == "Acme AI"
    assert [m.level_tag for m in response.context["messages"]] == ["error"]


def test_the_service_checks_the_role_and_the_name(owner, teammate, org):
    with pytest.raises(InvalidInput):
        services.rename_org(org, owner, " ")
    from portal.errors import NotAllowed

    with pytest.raises(NotAllowed):
        services.rename_org(org, teammate, "Mine")


# --- The landing page -------------------------------------------------------------------


def test_a_signed_in_visitor_goes_to_the_dashboard(owner, client_for):
    response = client_for(owner).get("/")
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"


def test_landing_features_real_models_a_code_sample_and_a_pricing_teaser(client):
    from billing.models import Plan

    listing("echo", "builtin:echo")
    listing("zephyr", "hf:acme/zephyr")
    Plan.objects.create(slug="team", name="Team", is_public=True, price_cents=4900)
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    featured = [item[0].slug for item in response.context["featured"]]
    assert featured[0] == "zephyr"
    assert 'href="/models/zephyr/#playground"' in html
    assert '"model":"zephyr"' in response.context["sample"].code.replace(" ", "")
    assert "http://testserver/api/v1/predictions" in html
    assert "Team" in html and "$49.00 / month" in html


def test_pages_show_moments_in_the_one_format(owner, org, client_for, token_for):
    from datetime import timedelta

    from django.utils import timezone

    services.issue_token(org, owner, "dated", expires_at=timezone.now() + timedelta(days=3))
    client = client_for(owner, org)
    for path in ("/org/tokens/", "/org/members/", "/org/audit/"):
        html = client.get(path).content.decode()
        moment = r'<time datetime="[^"]+" data-local>\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>'
        assert re.search(moment, html), path
