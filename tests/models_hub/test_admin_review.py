"""Reviewing a submission on its admin change page (issue #15): approve or return it with
a note, both refused for a revision the reviewer did not read; a staff-only preview of
the model page; and the admin and API docs branded with the product's name."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from models_hub import services
from models_hub.models import ListingStatus, ModelListing
from portal.models import AuditLog

FIELDS = {
    "name": "Acme Chat",
    "summary": "Our chat model",
    "description": "Trained on *everything*.",
    "task": "text-generation",
    "source": "hf:acme/chat-7b@v1",
    "visibility": "public",
}
BANNER = "Preview — not published"


@pytest.fixture
def submitted(org, owner) -> ModelListing:
    services.create_listing(org, owner, "acme-chat", FIELDS, ["chat"])
    return services.submit_for_review(org, owner, "acme-chat")


def staff_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def decide(client: Client, action: str, listing: ModelListing, **data):
    url = reverse(f"admin:models_hub_modellisting_{action}", args=[listing.pk])
    return client.post(url, {"revision": listing.content_revision, **data}, follow=True)


def shown(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_change_page_offers_both_decisions_and_a_preview(submitted, staff):
    change = reverse("admin:models_hub_modellisting_change", args=[submitted.pk])
    html = staff_client(staff).get(change).content.decode()
    assert f'formaction="/admin/models_hub/modellisting/{submitted.pk}/approve/"' in html
    assert f'formaction="/admin/models_hub/modellisting/{submitted.pk}/return/"' in html
    assert 'name="return_note"' in html
    assert 'href="/models/acme-chat/?preview=1"' in html


def test_approve_records_the_revision_read(submitted, staff):
    response = decide(staff_client(staff), "approve", submitted)
    assert shown(response) == [f"Revision {submitted.content_revision} of acme-chat approved."]
    submitted.refresh_from_db()
    assert submitted.approved_revision == submitted.content_revision
    assert submitted.reviewed_by == staff


def test_return_with_a_note_goes_back_to_the_publisher(submitted, staff, org, owner, client_for):
    response = decide(staff_client(staff), "return", submitted, return_note="  Add a licence. ")
    assert shown(response) == [
        f"Revision {submitted.content_revision} of acme-chat returned to the publisher."
    ]
    submitted.refresh_from_db()
    assert submitted.status == ListingStatus.DRAFT
    assert submitted.review_note == "Add a licence."
    assert submitted.reviewed_by == staff
    logged = AuditLog.objects.get(org=org, action="model.rejected", target="acme-chat")
    assert logged.data["note"] == "Add a licence."
    assert logged.data["revision"] == submitted.content_revision
    # The publisher reads it on their publishing page.
    publisher = client_for(owner, org)
    assert "Reviewer: Add a licence." in publisher.get(reverse("publish_list")).content.decode()
    # Once resubmitted, the note has been answered: the page no longer shows it.
    services.submit_for_review(org, owner, "acme-chat")
    assert "Reviewer:" not in publisher.get(reverse("publish_list")).content.decode()


@pytest.mark.parametrize("note", ["", "   "])
def test_return_without_a_note_is_refused(submitted, staff, note):
    response = decide(staff_client(staff), "return", submitted, return_note=note)
    assert shown(response) == ["Write a note telling the publisher what to change."]
    submitted.refresh_from_db()
    assert submitted.status == ListingStatus.PENDING_REVIEW
    assert submitted.review_note == ""
    assert submitted.reviewed_by is None


@pytest.mark.parametrize("action", ["approve", "return"])
def test_a_stale_revision_is_refused(submitted, staff, org, owner, action):
    stale = ModelListing.objects.get(pk=submitted.pk)  # the reviewer's page
    # The publisher withdraws, edits and resubmits while the reviewer reads.
    services.withdraw_submission(org, owner, "acme-chat")
    services.update_listing(org, owner, "acme-chat", {"summary": "Changed"}, ["chat"])
    services.submit_for_review(org, owner, "acme-chat")
    response = decide(staff_client(staff), action, stale, return_note="Add a licence.")
    assert "changed since you opened it" in shown(response)[0]
    current = ModelListing.objects.get(pk=submitted.pk)
    assert current.status == ListingStatus.PENDING_REVIEW
    assert current.approved_revision is None
    assert current.review_note == ""


@pytest.mark.parametrize("action", ["approve", "return"])
def test_a_missing_revision_is_refused(submitted, staff, action):
    url = reverse(f"admin:models_hub_modellisting_{action}", args=[submitted.pk])
    response = staff_client(staff).post(url, {"return_note": "x"}, follow=True)
    assert shown(response) == ["Review from the listing's page."]
    submitted.refresh_from_db()
    assert submitted.status == ListingStatus.PENDING_REVIEW
    assert submitted.approved_revision is None


@pytest.mark.parametrize("action", ["approve", "return"])
def test_non_staff_cannot_decide(submitted, owner, outsider, action):
    for user in (owner, outsider):
        response = decide(staff_client(user), action, submitted, return_note="x")
        assert response.redirect_chain[0][0].startswith("/admin/login/")
    submitted.refresh_from_db()
    assert submitted.status == ListingStatus.PENDING_REVIEW
    assert submitted.approved_revision is None


@pytest.mark.parametrize("action", ["approve", "return"])
def test_staff_without_the_change_permission_cannot_decide(submitted, outsider, action):
    outsider.is_staff = True
    outsider.save()
    outsider.user_permissions.add(Permission.objects.get(codename="view_modellisting"))
    url = reverse(f"admin:models_hub_modellisting_{action}", args=[submitted.pk])
    response = staff_client(outsider).post(
        url, {"revision": submitted.content_revision, "return_note": "x"}
    )
    assert response.status_code == 403
    submitted.refresh_from_db()
    assert submitted.status == ListingStatus.PENDING_REVIEW


def test_get_is_not_a_decision(submitted, staff):
    url = reverse("admin:models_hub_modellisting_return", args=[submitted.pk])
    assert staff_client(staff).get(url).status_code == 405


# --- Preview ------------------------------------------------------------------------


def test_staff_preview_the_unpublished_page_with_a_banner(submitted, staff):
    response = staff_client(staff).get("/models/acme-chat/", {"preview": "1"})
    assert response.status_code == 200
    html = response.content.decode()
    assert BANNER in html
    assert "Acme Chat" in html
    # Without the parameter staff see the catalog as anyone outside the org does.
    assert staff_client(staff).get("/models/acme-chat/").status_code == 404


def test_a_published_listing_previews_without_the_banner(make_listing, staff):
    make_listing("zephyr-chat")
    response = staff_client(staff).get("/models/zephyr-chat/", {"preview": "1"})
    assert response.status_code == 200
    assert BANNER not in response.content.decode()


def test_preview_is_staff_only(submitted, client, client_for, outsider, teammate, org, owner):
    # Anonymous visitors and customers of other orgs: 404, as for a missing model.
    assert client.get("/models/acme-chat/", {"preview": "1"}).status_code == 404
    assert client_for(outsider).get("/models/acme-chat/", {"preview": "1"}).status_code == 404
    assert client.get("/models/no-such-model/", {"preview": "1"}).status_code == 404
    # The publishing org sees its own listing as before, with no staff banner.
    for member in (owner, teammate):
        response = client_for(member, org).get("/models/acme-chat/", {"preview": "1"})
        assert response.status_code == 200
        assert BANNER not in response.content.decode()


def test_staff_preview_of_a_missing_model_is_404(staff):
    assert staff_client(staff).get("/models/nope/", {"preview": "1"}).status_code == 404


# --- Branding -----------------------------------------------------------------------


def test_admin_carries_the_products_name_and_a_way_back(staff):
    html = staff_client(staff).get("/admin/").content.decode()
    assert "<title>Model Portal administration | Model Portal administration</title>" in html
    assert '<a href="/admin/">Model Portal administration</a>' in html  # the header
    assert '<a href="/">View site</a>' in html


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_api_docs_carry_the_products_name_and_a_way_back(client, url):
    html = client.get(url).content.decode()
    assert "<title>Model Portal API</title>" in html
    assert 'href="/">&larr; Model Portal</a>' in html
