"""Model versions (issue #13): each publish freezes what runs; callers may pin
`slug:<version>`; deprecation tells the orgs that called a version once, by e-mail and a
signed `model.deprecated` account webhook (judged by the `standardwebhooks` library).

Predictions run in-process through the worker's own `execution.execute` on the echo
model; admission only needs a worker announced for the queue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.apps import apps
from django.test import Client
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from inference import execution, presence
from inference.models import Prediction
from models_hub import deprecations, services, versions
from models_hub.demo import load_demo_catalog
from models_hub.models import DeprecationNotice, ListingStatus, ModelListing, ModelVersion
from portal import account_webhooks
from portal.celery import app as celery_app
from portal.errors import InvalidInput, NotAllowed, NotFound
from portal.models import Role
from tests.conftest import make_user
from tests.migration_steps import run_python_step

pytestmark = pytest.mark.django_db

PROMPT = "one two three four five"
WORKER = "versions-tests@host"


@pytest.fixture(autouse=True)
def _no_ip_limit(settings):
    settings.IP_RATE_LIMIT_PER_MINUTE = 0


@pytest.fixture
def worker_present() -> Iterator[None]:
    """Admission asks whether a worker serves the queue; announce one (tests run it)."""
    presence.announce(WORKER, ["cpu"])
    yield
    presence.withdraw(WORKER, ["cpu"])


def publish(listing: ModelListing, staff, **changes) -> ModelVersion:
    """The operator's flow: back to draft with the changes, then publish from admin."""
    ModelListing.objects.filter(pk=listing.pk).update(status=ListingStatus.DRAFT, **changes)
    assert services.publish_listings(ModelListing.objects.filter(pk=listing.pk), staff) == 1
    return listing.versions.first()


@pytest.fixture
def echo(make_listing, staff) -> ModelListing:
    """An operator echo listing that emits every prompt word (version 1 when published)."""
    return make_listing(
        "ver-echo", status=ListingStatus.DRAFT, default_params={"max_new_tokens": 32}
    )


@pytest.fixture
def v1(echo, staff) -> ModelVersion:
    return publish(echo, staff)


@pytest.fixture
def v2(echo, v1, staff) -> ModelVersion:
    """Republished with a different snapshot: two words per call."""
    return publish(echo, staff, default_params={"max_new_tokens": 2})


def create(client: Client, model: str):
    return client.post(
        "/api/v1/predictions",
        {"model": model, "input": {"prompt": PROMPT}},
        content_type="application/json",
    )


def chat(client: Client, model: str):
    return client.post(
        "/v1/chat/completions",
        {"model": model, "messages": [{"role": "user", "content": PROMPT}]},
        content_type="application/json",
    )


def run(client: Client, model: str) -> dict:
    """Creates a prediction, runs it as a worker would, and reads it back from the API."""
    response = create(client, model)
    assert response.status_code == 201, response.content
    prediction_id = response.json()["id"]
    execution.execute(prediction_id, WORKER)
    return client.get(f"/api/v1/predictions/{prediction_id}").json()


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.content[:500]
    error = response.json()["error"]
    assert set(error) == {"type", "code", "message", "param"}
    return error


def retire(version: ModelVersion, staff) -> ModelVersion:
    """Staff retire it now (forced: no notice period)."""
    when = timezone.now() - timedelta(seconds=1)
    return versions.deprecate_version(version, when, staff, force=True)


# --- Publishing writes versions --------------------------------------------------------


def test_each_publish_freezes_what_went_out(echo, v1, v2):
    assert list(echo.versions.all()) == [v2, v1]
    assert v1.default_params == {"max_new_tokens": 32}
    assert v2.default_params == {"max_new_tokens": 2}
    assert v2.content_revision == ModelListing.objects.get(pk=echo.pk).content_revision
    assert len(v1.id) == 12 and v1.id != v2.id


def test_an_org_submission_is_versioned_at_its_approved_revision(make_listing, org, staff):
    listing = make_listing("acme-model", org=org, status=ListingStatus.PENDING_REVIEW)
    services.approve_listing(listing.pk, staff, listing.content_revision)
    services.publish_listings(ModelListing.objects.filter(pk=listing.pk), staff)
    [version] = listing.versions.all()
    assert version.content_revision == listing.content_revision
    assert version.published_by == staff


def test_the_demo_catalog_gets_one_version_per_change():
    load_demo_catalog()
    load_demo_catalog()
    echo = ModelListing.objects.get(slug="echo")
    assert echo.versions.count() == 1
    ModelListing.objects.filter(pk=echo.pk).update(options={"tokens_per_second": 5})
    load_demo_catalog()  # puts the demo's options back: a change from the newest version
    assert echo.versions.count() == 1
    ModelListing.objects.filter(pk=echo.pk).update(time_limit_seconds=7)
    versions.ensure_current_version(ModelListing.objects.get(pk=echo.pk))
    assert [v.time_limit_seconds for v in echo.versions.all()] == [7, 300]


def test_the_data_migration_gives_published_listings_one_version(make_listing):
    published = make_listing("live-model")
    draft = make_listing("draft-model", status=ListingStatus.DRAFT)
    run_python_step("models_hub", "first_versions")(apps, None)
    [version] = published.versions.all()
    assert version.source == published.source and version.created_at == published.created_at
    assert not draft.versions.exists()


# --- Pinned and unpinned calls ---------------------------------------------------------


def test_a_pinned_call_runs_its_snapshot_after_a_republish(
    worker_present, echo, v1, v2, org, token_for, api_client
):
    client = api_client(token_for(org))
    pinned = run(client, f"ver-echo:{v1.id}")
    assert pinned["status"] == "succeeded"
    assert (pinned["model"], pinned["version"]) == ("ver-echo", v1.id)
    assert pinned["output"] == PROMPT
    latest = run(client, "ver-echo")
    assert (latest["version"], latest["output"]) == (v2.id, "one two")


def test_unversioned_listings_run_as_they_are(
    worker_present, make_listing, org, token_for, api_client
):
    make_listing("plain-echo")
    prediction = run(api_client(token_for(org)), "plain-echo")
    assert (prediction["status"], prediction["version"]) == ("succeeded", None)


def test_an_unknown_version_is_404(worker_present, v1, org, token_for, api_client):
    client = api_client(token_for(org))
    for response in (create(client, "ver-echo:0123456789ab"), chat(client, "ver-echo:abc")):
        error = error_of(response, 404)
        assert (error["code"], error["param"]) == ("version_not_found", "model")
    assert not Prediction.objects.exists()


def test_a_retired_version_is_410_and_unpinned_calls_move_on(
    worker_present, echo, v1, v2, staff, org, token_for, api_client
):
    client = api_client(token_for(org))
    retire(v2, staff)
    for response in (create(client, f"ver-echo:{v2.id}"), chat(client, f"ver-echo:{v2.id}")):
        error = error_of(response, 410)
        assert (error["code"], error["param"]) == ("version_retired", "model")
    assert run(client, "ver-echo")["version"] == v1.id  # the newest live one
    # Deprecated but not yet retired: still served when pinned.
    versions.deprecate_version(v1, timezone.now() + timedelta(days=8), staff)
    assert run(client, f"ver-echo:{v1.id}")["status"] == "succeeded"


@pytest.mark.parametrize(
    "model", ["ver-echo:", ":abc", "ver-echo:a:b", "ver-echo:ABC", "x" * 5000, "a:" + "b" * 5000]
)
def test_malformed_model_references_are_400(worker_present, v1, org, token_for, api_client, model):
    client = api_client(token_for(org))
    for response in (create(client, model), chat(client, model)):
        assert response.status_code in (400, 404), response.content[:300]
        if ":" in model:
            assert error_of(response, 400)["param"] == "model"
    assert not Prediction.objects.exists()


# --- Tenancy -----------------------------------------------------------------------------


@pytest.fixture
def private_version(private_listing) -> ModelVersion:
    return versions.record_version(private_listing)


def test_another_orgs_private_version_is_404_like_a_missing_model(
    worker_present,
    private_version,
    org,
    owner,
    teammate,
    outsider,
    outsider_org,
    client_for,
    token_for,
    api_client,
):
    ref = f"acme-secret-model:{private_version.id}"
    for user in (owner, teammate):
        assert create(client_for(user, org), ref).status_code == 201
    stranger = api_client(token_for(outsider_org))
    hidden = error_of(create(stranger, ref), 404)
    missing = error_of(create(stranger, "acme-secret-model"), 404)
    assert (
        hidden
        == missing
        == {
            "type": "not_found_error",
            "code": "model_not_found",
            "message": "Model 'acme-secret-model' not found.",
            "param": "model",
        }
    )
    assert error_of(chat(stranger, ref), 404)["code"] == "model_not_found"
    assert stranger.get("/api/v1/models/acme-secret-model/versions").status_code == 404
    assert (
        client_for(outsider, outsider_org)
        .get("/api/v1/models/acme-secret-model/versions")
        .status_code
        == 404
    )
    mine = client_for(teammate, org).get("/api/v1/models/acme-secret-model/versions")
    assert [v["id"] for v in mine.json()] == [private_version.id]


# --- The versions endpoint ---------------------------------------------------------------


def test_versions_are_listed_newest_first_with_their_status(client, echo, v1, v2, staff):
    retires = timezone.now() + timedelta(days=30)
    versions.deprecate_version(v1, retires, staff)
    response = client.get("/api/v1/models/ver-echo/versions")
    assert response.status_code == 200
    assert response.json() == [
        {
            "id": v2.id,
            "created_at": v2.created_at.isoformat().replace("+00:00", "Z"),
            "status": "current",
            "retires_at": None,
        },
        {
            "id": v1.id,
            "created_at": v1.created_at.isoformat().replace("+00:00", "Z"),
            "status": "deprecated",
            "retires_at": retires.isoformat().replace("+00:00", "Z"),
        },
    ]
    assert client.get("/api/v1/models/no-such-model/versions").status_code == 404


# --- Who may deprecate -------------------------------------------------------------------


def test_publishers_admins_deprecate_their_own_versions_with_notice(
    private_version, org, owner, teammate, outsider, staff
):
    later = timezone.now() + timedelta(days=8)
    with pytest.raises(NotAllowed):
        versions.deprecate_version(private_version, later, teammate)  # a plain member
    with pytest.raises(NotFound):
        versions.deprecate_version(private_version, later, outsider)
    with pytest.raises(InvalidInput):
        versions.deprecate_version(private_version, timezone.now() + timedelta(days=6), owner)
    with pytest.raises(NotAllowed):
        versions.deprecate_version(private_version, timezone.now(), owner, force=True)
    done = versions.deprecate_version(private_version, later, owner, reason="Superseded")
    assert (done.status, done.retires_at, done.deprecated_by) == ("deprecated", later, owner)


def test_publishers_deprecate_from_their_publish_page(
    private_version, org, owner, teammate, client_for
):
    url = f"/models/publish/acme-secret-model/versions/{private_version.id}/deprecate/"
    page = client_for(owner, org).get("/models/publish/")
    assert url.encode() in page.content
    later = (timezone.now() + timedelta(days=9)).strftime("%Y-%m-%dT%H:%M")
    assert client_for(teammate, org).post(url, {"retires_at": later}).status_code == 403
    too_soon = (timezone.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    assert client_for(owner, org).post(url, {"retires_at": too_soon}).status_code == 302
    private_version.refresh_from_db()
    assert private_version.deprecated_at is None
    assert client_for(owner, org).post(url, {"retires_at": later}).status_code == 302
    private_version.refresh_from_db()
    assert private_version.status == "deprecated"
    assert private_version.retires_at.strftime("%Y-%m-%dT%H:%M") == later


def test_the_operators_versions_are_deprecated_by_staff_only(v1, owner):
    with pytest.raises(NotAllowed):
        versions.deprecate_version(v1, timezone.now() + timedelta(days=8), owner)


def test_staff_deprecate_from_admin(client, echo, v1, staff):
    client.force_login(staff)
    form = {"action": "deprecate", "_selected_action": [v1.pk]}
    page = client.post("/admin/models_hub/modelversion/", form)
    assert page.status_code == 200 and b"retires_at" in page.content
    retires = (timezone.now() + timedelta(days=10)).strftime("%Y-%m-%d %H:%M:%S")
    done = client.post(
        "/admin/models_hub/modelversion/",
        {**form, "apply": "1", "retires_at": retires, "reason": "Old weights"},
    )
    assert done.status_code == 302
    v1.refresh_from_db()
    assert v1.deprecated_at and v1.deprecation_reason == "Old weights"
    listing_page = client.get(f"/admin/models_hub/modellisting/{echo.pk}/change/")
    assert v1.id.encode() in listing_page.content


def test_a_staff_edit_of_a_live_listing_in_admin_is_a_new_version(client, echo, v1, staff):
    client.force_login(staff)
    form = {
        "name": echo.name,
        "slug": echo.slug,
        "summary": echo.summary,
        "task": echo.task,
        "source": echo.source,
        "visibility": "public",
        "status": "published",
        "dtype": "auto",
        "queue": "cpu",
        "time_limit_seconds": 60,
        "max_context": 64,
        "input_schema": json.dumps(echo.input_schema),
        "example_input": "{}",
        "default_params": "{}",
        "max_params": "{}",
        "options": json.dumps(echo.options),
    }
    change = f"/admin/models_hub/modellisting/{echo.pk}/change/"
    assert client.post(change, form).status_code == 302
    newest = echo.versions.first()
    assert newest != v1 and newest.time_limit_seconds == 60
    assert newest.content_revision == ModelListing.objects.get(pk=echo.pk).content_revision
    assert client.post(change, form).status_code == 302  # nothing changed: no new version
    assert echo.versions.count() == 2


# --- Telling callers ---------------------------------------------------------------------


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Tasks run where they are sent (no broker, no worker process): the real task code."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def test_deprecation_tells_each_calling_org_once(
    worker_present,
    eager_tasks,
    echo,
    v1,
    v2,
    staff,
    org,
    owner,
    outsider_org,
    token_for,
    api_client,
    receiver,
    mailoutbox,
    django_capture_on_commit_callbacks,
):
    quiet = make_user("quiet@example.com").memberships.get().org  # called v2 only
    stale = make_user("stale@example.com").memberships.get().org  # called v1 long ago
    for caller_org, model in (
        (org, f"ver-echo:{v1.id}"),
        (org, f"ver-echo:{v1.id}"),
        (outsider_org, f"ver-echo:{v1.id}"),
        (quiet, "ver-echo"),
        (stale, f"ver-echo:{v1.id}"),
    ):
        assert create(api_client(token_for(caller_org)), model).status_code == 201
    Prediction.objects.filter(org=stale).update(created_at=timezone.now() - timedelta(days=91))
    second_owner = make_user("second-owner@example.com")
    org.memberships.create(user=second_owner, role=Role.OWNER)
    account_webhooks.set_account_webhook(org, owner, receiver.url, ["model.deprecated"])

    retires = timezone.now() + timedelta(days=14)
    for _ in range(2):  # a repeat (or a retry) tells nobody twice
        with django_capture_on_commit_callbacks(execute=True):
            versions.deprecate_version(v1, retires, staff, reason="Superseded by a new version")

    notified = set(DeprecationNotice.objects.values_list("org_id", flat=True))
    assert notified == {org.pk, outsider_org.pk}
    assert sorted(m.to[0] for m in mailoutbox) == [
        "outsider@example.com",
        "owner@example.com",
        "second-owner@example.com",
    ]
    assert f"ver-echo:{v1.id}" in mailoutbox[0].body
    [(headers, body)] = receiver.received  # the outsider's org has no account webhook
    event = Webhook(org.webhook_secret).verify(body, headers)
    notice = DeprecationNotice.objects.get(org=org)
    assert headers["webhook-id"] == deprecations.message_id(notice)
    assert event == {
        "type": "model.deprecated",
        "timestamp": notice.created_at.isoformat().replace("+00:00", "Z"),
        "data": {
            "model": "ver-echo",
            "version": v1.id,
            "deprecated_at": ModelVersion.objects.get(pk=v1.pk)
            .deprecated_at.isoformat()
            .replace("+00:00", "Z"),
            "retires_at": retires.isoformat().replace("+00:00", "Z"),
            "reason": "Superseded by a new version",
        },
    }
