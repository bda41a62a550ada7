"""Model versions: each publish freezes what runs; callers may pin one (`slug:<id>`).

A version is written by every publish (`record_version`), and deprecated by its publisher
or the operator (`deprecate_version`), which tells the orgs that called it lately and
sets the date from which calls pinned to it are refused (410 `version_retired`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from models_hub import deprecations, hot
from models_hub.models import SNAPSHOT_FIELDS, ModelListing, ModelVersion
from portal.errors import Gone, InvalidInput, NotAllowed, NotFound
from portal.hotcache import Stamp
from portal.models import Role
from portal.services import audit, require_role

# Clients get this long at least to move off a deprecated version (unless staff force it).
MIN_NOTICE = timedelta(days=7)
# Orgs that called a version this recently are told of its deprecation.
NOTIFY_CALLERS_SINCE = timedelta(days=90)
VERSION_ID = re.compile(r"[a-z0-9]{1,32}")


def record_version(listing: ModelListing, actor: AbstractBaseUser | None = None) -> ModelVersion:
    """Freezes what the listing runs now as its newest version."""
    snapshot = {name: getattr(listing, name) for name in SNAPSHOT_FIELDS}
    return ModelVersion.objects.create(
        listing=listing,
        content_revision=listing.content_revision,
        published_by=actor if actor is not None and actor.pk else None,
        **snapshot,
    )


def ensure_current_version(
    listing: ModelListing, actor: AbstractBaseUser | None = None
) -> ModelVersion:
    """The newest version if it still matches the listing, else a new one: loading the
    demo catalog (or saving an unchanged listing) twice does not pile up versions."""
    newest = listing.versions.first()
    if newest is not None and not newest.snapshot_differs(listing):
        return newest
    return record_version(listing, actor)


def split_model_ref(model: str) -> tuple[str, str | None]:
    """`slug` or `slug:<version>` -> (slug, version or None); InvalidInput when malformed."""
    if ":" not in model:
        return model, None
    slug, _, version = model.partition(":")
    if not slug or not VERSION_ID.fullmatch(version):
        raise InvalidInput(
            "model must be a model slug, or slug:<version id> to pin a version.", param="model"
        )
    return slug, version


def version_to_run(
    listing: ModelListing, version_id: str | None, stamp: Stamp | None
) -> ModelVersion | None:
    """The pinned version (NotFound if the listing has no such version, Gone once retired),
    or the newest live one; None when the listing has no live version (it runs as is).
    Reads the process's cache under `stamp` (`hot.catalog_stamp()`)."""
    known = hot.versions_of(listing, stamp)
    now = timezone.now()
    if version_id is None:
        return next((version for version in known if not version.is_retired(now)), None)
    version = next((version for version in known if version.pk == version_id), None)
    if version is None:
        raise NotFound(
            f"Model {listing.slug!r} has no version {version_id!r}.",
            code="version_not_found",
            param="model",
        )
    if version.is_retired(now):
        raise Gone(
            f"Version {version_id} of {listing.slug} was retired on "
            f"{version.retires_at:%Y-%m-%d %H:%M} UTC; call {listing.slug} or pin a newer "
            f"version (GET /api/v1/models/{listing.slug}/versions lists them).",
            code="version_retired",
            param="model",
        )
    return version


def _check_may_deprecate(version: ModelVersion, actor: AbstractBaseUser, force: bool) -> None:
    """Staff may deprecate any version, and force a short notice; a publisher's owners and
    admins may deprecate their own listings' versions with at least MIN_NOTICE."""
    if actor.is_staff:
        return
    if force:
        raise NotAllowed("Only the operator's staff may retire a version at short notice.")
    org = version.listing.org
    if org is None:
        raise NotAllowed("The operator's models are deprecated by its staff.")
    require_role(org, actor, Role.ADMIN)


@transaction.atomic
def deprecate_version(
    version: ModelVersion,
    retires_at: datetime,
    actor: AbstractBaseUser,
    *,
    reason: str = "",
    force: bool = False,
) -> ModelVersion:
    """Marks the version deprecated, retiring on `retires_at`, and tells each org that
    called it in the last 90 days once (a repeat or retry tells nobody twice; it may move
    `retires_at`, but orgs already told are not told again). A retired version stays
    retired (InvalidInput)."""
    _check_may_deprecate(version, actor, force)
    now = timezone.now()
    if not force and retires_at < now + MIN_NOTICE:
        raise InvalidInput(
            f"retires_at must be at least {MIN_NOTICE.days} days ahead.", param="retires_at"
        )
    # Locks the version row only: the listing's publisher may be empty (an outer join).
    locked = (
        ModelVersion.objects.select_for_update(of=("self",))
        .select_related("listing__org")
        .get(pk=version.pk)
    )
    if locked.is_retired(now):
        raise InvalidInput("This version is already retired.", param="retires_at")
    locked.deprecated_at = locked.deprecated_at or now
    locked.retires_at = retires_at
    locked.deprecated_by = actor
    locked.deprecation_reason = reason
    locked.save(
        update_fields=["deprecated_at", "retires_at", "deprecated_by", "deprecation_reason"]
    )
    if locked.listing.org_id is not None:
        audit(
            locked.listing.org,
            actor,
            "model.version_deprecated",
            locked.listing.slug,
            version=locked.id,
            retires_at=retires_at.isoformat(),
        )
    deprecations.notify_callers(locked, since=now - NOTIFY_CALLERS_SINCE)
    return locked
