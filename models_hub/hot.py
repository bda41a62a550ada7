"""What admission reads of the catalog on every call, cached per process (`portal.hotcache`):
the listing a caller may call by slug, and each listing's versions. Both live under one
scope that every write to a listing or a version bumps (the signals here, and
`hotcache.update` for the bulk updates, which send none): publishes, reviews, edits and
deprecations are rare next to calls, so one scope costs little and cannot miss a row."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save

from models_hub.models import ModelListing, ModelVersion
from portal import hotcache
from portal.models import Organization

CATALOG_SCOPE = "catalog"

# Keyed by (org, slug): whether an org may call a listing depends on who asks (another
# org's private listing is None), so one org's answer is never served to another.
_callable: hotcache.HotCache[ModelListing | None] = hotcache.HotCache()
_versions: hotcache.HotCache[list[ModelVersion]] = hotcache.HotCache()
_run_targets: hotcache.HotCache[tuple[ModelListing, ModelVersion | None]] = hotcache.HotCache()


def catalog_stamp() -> hotcache.Stamp | None:
    return hotcache.stamp(CATALOG_SCOPE)


def callable_listing(
    org: Organization | None, slug: str, stamp: hotcache.Stamp | None
) -> ModelListing | None:
    """The listing `org` may call by `slug`, or None. The row is shared by this process's
    requests: read it, never change it."""

    def load() -> ModelListing | None:
        return ModelListing.objects.callable_by(org).filter(slug=slug).first()

    return _callable.get((org.pk if org else None, slug), stamp, load)


def versions_of(listing: ModelListing, stamp: hotcache.Stamp | None) -> list[ModelVersion]:
    """All of the listing's versions, newest first, retired ones included (a pinned call
    to one answers 410, not 404); whether each is retired is for the caller to judge
    against the clock, since retirement comes with time, not with a write."""
    return _versions.get(listing.pk, stamp, lambda: list(listing.versions.all()))


def run_target(
    listing_id: int, version_id: int | None, stamp: hotcache.Stamp | None
) -> tuple[ModelListing, ModelVersion | None]:
    """A claimed prediction's listing and the version it froze, for the worker that runs
    it. Shared by this process's runs: read them, never change them."""

    def load() -> tuple[ModelListing, ModelVersion | None]:
        listing = ModelListing.objects.get(pk=listing_id)
        if version_id is None:
            return listing, None
        version = ModelVersion.objects.get(pk=version_id)
        version.listing = listing
        return listing, version

    return _run_targets.get((listing_id, version_id), stamp, load)


def _catalog_changed(**kwargs: object) -> None:
    hotcache.bump(CATALOG_SCOPE)


def connect() -> None:
    for model in (ModelListing, ModelVersion):
        name = model.__name__
        post_save.connect(_catalog_changed, sender=model, dispatch_uid=f"hot-{name}")
        post_delete.connect(_catalog_changed, sender=model, dispatch_uid=f"hot-del-{name}")
