"""Admission reads the listing and its versions from the process's cache (no query on the
second call), and every write that changes what a call may run, the bulk ones included,
is seen by the next call: a private or unpublished listing is "not found" for others at
once, a retired version answers 410 at once, a new version runs at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inference import presence
from models_hub import hot, services, versions
from models_hub.models import ListingStatus, ModelListing, ModelVersion, Visibility
from portal import hotcache

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = "hot-lookups@host"
CACHED_TABLES = ("portal_apitoken", "models_hub_modellisting", "models_hub_modelversion")


@pytest.fixture(autouse=True)
def _no_ip_limit(settings):
    settings.IP_RATE_LIMIT_PER_MINUTE = 0


@pytest.fixture(autouse=True)
def worker_present() -> Iterator[None]:
    presence.announce(WORKER, ["cpu"])
    yield
    presence.withdraw(WORKER, ["cpu"])


def publish(listing: ModelListing, staff) -> ModelVersion:
    assert services.publish_listings(ModelListing.objects.filter(pk=listing.pk), staff) == 1
    return listing.versions.first()


@pytest.fixture
def echo(make_listing, staff, org) -> ModelListing:
    """A public listing of the org's, published (so it has a version)."""
    listing = make_listing("hot-echo", org=org, status=ListingStatus.DRAFT)
    services.submit_for_review(org, org.memberships.get(role="owner").user, listing.slug)
    listing.refresh_from_db()
    services.approve_listing(listing.pk, staff, listing.content_revision)
    publish(listing, staff)
    listing.refresh_from_db()
    return listing


@pytest.fixture
def call(api_client, token_for) -> Callable[..., int]:
    """POSTs a prediction as `org` and returns the status code."""
    clients: dict[int, Client] = {}

    def make(org, model: str) -> int:
        if org.pk not in clients:
            clients[org.pk] = api_client(token_for(org))
        client = clients[org.pk]
        response = client.post(
            "/api/v1/predictions",
            {"model": model, "input": {"prompt": "hi"}},
            content_type="application/json",
        )
        return response.status_code

    return make


def test_a_second_admission_reads_no_token_listing_or_version(echo, org, call):
    assert call(org, "hot-echo") == 201
    with CaptureQueriesContext(connection) as captured:
        assert call(org, "hot-echo") == 201
    reads = [q["sql"] for q in captured if q["sql"].startswith("SELECT")]
    assert not [sql for sql in reads if any(f'"{table}"' in sql for table in CACHED_TABLES)]
    # What is left is the admission's own writes: BEGIN, the prediction, the usage
    # period's id, its usage record, COMMIT.
    assert len(captured) == 5, [q["sql"][:80] for q in captured]


def test_a_listing_made_private_is_not_found_for_others_at_once(echo, org, outsider_org, call):
    assert call(outsider_org, "hot-echo") == 201
    echo.visibility = Visibility.PRIVATE
    echo.save()  # as admin saves it
    assert call(outsider_org, "hot-echo") == 404
    assert call(org, "hot-echo") == 201


def test_a_private_listing_is_never_served_to_another_org(
    make_listing, org, outsider_org, staff, call
):
    private = make_listing("hot-secret", org=org, visibility=Visibility.PRIVATE)
    versions.ensure_current_version(private, staff)
    assert call(org, "hot-secret") == 201
    assert call(outsider_org, "hot-secret") == 404
    assert call(org, "hot-secret") == 201


def test_an_unpublished_listing_is_not_found_at_once(echo, org, outsider_org, call):
    assert call(outsider_org, "hot-echo") == 201
    echo.status = ListingStatus.DRAFT
    echo.save()
    assert call(outsider_org, "hot-echo") == 404
    assert call(org, "hot-echo") == 404


def test_a_retired_version_answers_410_at_once_and_a_deprecated_one_still_runs(
    echo, org, staff, call
):
    v1 = echo.versions.get()
    assert call(org, f"hot-echo:{v1.pk}") == 201
    versions.deprecate_version(v1, timezone.now() + timedelta(days=30), staff)
    assert call(org, f"hot-echo:{v1.pk}") == 201
    versions.deprecate_version(v1, timezone.now() - timedelta(seconds=1), staff, force=True)
    assert call(org, f"hot-echo:{v1.pk}") == 410


def test_a_version_retires_when_its_time_comes_without_a_write(echo, org, staff, call):
    v1 = echo.versions.get()
    versions.deprecate_version(v1, timezone.now() + timedelta(seconds=1), staff, force=True)
    assert call(org, f"hot-echo:{v1.pk}") == 201
    assert call(org, "hot-echo") == 201
    time.sleep(1.1)
    assert call(org, f"hot-echo:{v1.pk}") == 410
    assert call(org, "hot-echo") == 201  # no live version left: it runs as the listing is


def test_a_new_version_runs_at_once(echo, org, staff, call):
    from inference.models import Prediction

    assert call(org, "hot-echo") == 201
    v2 = versions.record_version(echo, staff)
    assert call(org, "hot-echo") == 201
    assert Prediction.objects.order_by("-created_at").first().version_id == v2.pk


def _bumps(write: Callable[[], object]) -> bool:
    before = hotcache.stamp(hot.CATALOG_SCOPE)
    write()
    return hotcache.stamp(hot.CATALOG_SCOPE) != before


def test_every_bulk_write_to_listings_bumps_the_catalog(make_listing, org, staff):
    owner = org.memberships.get(role="owner").user
    draft = make_listing("hot-draft", org=org, status=ListingStatus.DRAFT)
    assert _bumps(lambda: services.submit_for_review(org, owner, draft.slug))
    assert _bumps(lambda: services.withdraw_submission(org, owner, draft.slug))
    services.submit_for_review(org, owner, draft.slug)
    draft.refresh_from_db()
    assert _bumps(lambda: services.approve_listing(draft.pk, staff, draft.content_revision))
    assert _bumps(lambda: publish(draft, staff))
    assert _bumps(
        lambda: services.deprecate_listings(ModelListing.objects.filter(pk=draft.pk), staff)
    )
    other = make_listing("hot-other", org=org, status=ListingStatus.DRAFT)
    services.submit_for_review(org, owner, other.slug)
    assert _bumps(
        lambda: services.reject_listings(ModelListing.objects.filter(pk=other.pk), staff, "no")
    )
