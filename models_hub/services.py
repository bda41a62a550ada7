"""Writes to the catalog: the marketplace submission flow and the operator's review.

An org's admin creates a listing (a draft), edits it, submits it for review; a staff
member approves the revision they read and publishes it (or returns it to draft with a
note) from Django admin. Every edit and submission bumps the listing's revision, and
publishing needs the approved revision to be the current one. Status changes are
conditional updates, so two reviewers acting at once cannot both win.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from inference.spec import SourceError, SourceKind, parse_source
from models_hub import hot
from models_hub.models import ListingStatus, ModelListing, Tag, Task
from models_hub.schemas import DEFAULT_MAX_NEW_TOKENS_CAP, default_schema
from models_hub.versions import record_version
from portal import hotcache
from portal.errors import Conflict, InvalidInput, NotFound
from portal.models import Organization, Role
from portal.services import audit, require_role

# Model pages of the publishing flow live under /models/publish/.
RESERVED_SLUGS = frozenset({"publish"})
# What a publishing org may set; runtime options and queues are the operator's call
# during review.
ORG_FIELDS = ("name", "summary", "description", "task", "source", "visibility")
MAX_TAGS = 10


def _raise_first(exc: ValidationError) -> None:
    field, messages = next(iter(exc.message_dict.items()))
    param = None if field == "__all__" else field
    raise InvalidInput(messages[0], param=param) from exc


def _check_org_source(source: str) -> None:
    """Publishers bring Hugging Face models: local paths and packages are the operator's."""
    try:
        parsed = parse_source(source)
    except SourceError as exc:
        raise InvalidInput(str(exc), param="source") from exc
    if parsed.kind != SourceKind.HF:
        raise InvalidInput(
            "Published models come from Hugging Face: hf:org/name@revision.", param="source"
        )


def tag_objects(names: list[str]) -> list[Tag]:
    tags = []
    for name in dict.fromkeys(n.strip() for n in names if n.strip()):
        slug = slugify(name)[:40]
        if not slug:
            raise InvalidInput(f"{name!r} is not a usable tag.", param="tags")
        tag, _ = Tag.objects.get_or_create(slug=slug, defaults={"name": name[:60]})
        tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"At most {MAX_TAGS} tags.", param="tags")
    return tags


def _save_checked(listing: ModelListing, tags: list[str] | None) -> ModelListing:
    if listing.slug in RESERVED_SLUGS:
        raise InvalidInput(f"{listing.slug!r} is reserved; choose another slug.", param="slug")
    try:
        listing.full_clean()
    except ValidationError as exc:
        _raise_first(exc)
    listing.save()
    if tags is not None:
        listing.tags.set(tag_objects(tags))
    return listing


def _task_defaults(task: str) -> dict[str, Any]:
    if task not in Task.values:
        raise InvalidInput("Unknown task.", param="task")
    defaults: dict[str, Any] = {"input_schema": default_schema(task)}
    if task == Task.TEXT_GENERATION:
        defaults["max_params"] = {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS_CAP}
    return defaults


@transaction.atomic
def create_listing(
    org: Organization, actor: AbstractBaseUser, slug: str, fields: dict[str, Any], tags: list[str]
) -> ModelListing:
    require_role(org, actor, Role.ADMIN)
    values = {name: fields[name] for name in ORG_FIELDS if name in fields}
    _check_org_source(values.get("source", ""))
    listing = ModelListing(
        org=org,
        slug=slug,
        created_by=actor,
        status=ListingStatus.DRAFT,
        **_task_defaults(values.get("task", "")),
        **values,
    )
    _save_checked(listing, tags)
    audit(org, actor, "model.created", listing.slug)
    return listing


def _own_listing(org: Organization, slug: str, *, for_update: bool = False) -> ModelListing:
    listings = ModelListing.objects.filter(org=org, slug=slug)
    listing = (listings.select_for_update() if for_update else listings).first()
    if listing is None:
        raise NotFound(f"Model {slug!r} not found.", code="model_not_found")
    return listing


@transaction.atomic
def update_listing(
    org: Organization, actor: AbstractBaseUser, slug: str, fields: dict[str, Any], tags: list[str]
) -> ModelListing:
    """Drafts only: what a reviewer looked at is what gets published."""
    require_role(org, actor, Role.ADMIN)
    listing = _own_listing(org, slug, for_update=True)
    if listing.status != ListingStatus.DRAFT:
        raise Conflict("Only a draft can be edited; withdraw it from review first.")
    values = {name: fields[name] for name in ORG_FIELDS if name in fields}
    if "source" in values:
        _check_org_source(values["source"])
    if values.get("task", listing.task) != listing.task:
        for name, value in _task_defaults(values["task"]).items():
            setattr(listing, name, value)
    for name, value in values.items():
        setattr(listing, name, value)
    # The row is locked (for_update), so this increment cannot lose a concurrent one.
    listing.content_revision += 1
    _save_checked(listing, tags)
    audit(org, actor, "model.updated", listing.slug)
    return listing


def _transition(
    listings: Any, from_statuses: tuple[str, ...], to_status: str, **changes: Any
) -> int:
    """Moves listings between statuses only if they are still where we expect them."""
    moving = listings.filter(status__in=from_statuses)
    return hotcache.update(moving, hot.CATALOG_SCOPE, status=to_status, **changes)


@transaction.atomic
def submit_for_review(org: Organization, actor: AbstractBaseUser, slug: str) -> ModelListing:
    require_role(org, actor, Role.ADMIN)
    listing = _own_listing(org, slug)
    moved = _transition(
        ModelListing.objects.filter(pk=listing.pk),
        (ListingStatus.DRAFT,),
        ListingStatus.PENDING_REVIEW,
        submitted_at=timezone.now(),
        # A resubmission is a new revision: an approval of an earlier one does not cover it.
        content_revision=F("content_revision") + 1,
    )
    if not moved:
        raise Conflict("Only a draft can be submitted for review.")
    audit(org, actor, "model.submitted", listing.slug)
    listing.refresh_from_db()
    return listing


@transaction.atomic
def withdraw_submission(org: Organization, actor: AbstractBaseUser, slug: str) -> ModelListing:
    require_role(org, actor, Role.ADMIN)
    listing = _own_listing(org, slug)
    moved = _transition(
        ModelListing.objects.filter(pk=listing.pk),
        (ListingStatus.PENDING_REVIEW,),
        ListingStatus.DRAFT,
    )
    if not moved:
        raise Conflict("Only a listing pending review can be withdrawn.")
    audit(org, actor, "model.withdrawn", listing.slug)
    listing.refresh_from_db()
    return listing


@transaction.atomic
def approve_listing(listing_id: int, reviewer: AbstractBaseUser, revision: int) -> ModelListing:
    """Staff: records that `revision`, the one the reviewer read, may be published.

    Refused when the listing moved on since the reviewer's page was drawn: approving the
    current revision instead would approve content nobody read."""
    approved = hotcache.update(
        ModelListing.objects.filter(
            pk=listing_id, status=ListingStatus.PENDING_REVIEW, content_revision=revision
        ),
        hot.CATALOG_SCOPE,
        approved_revision=revision,
        reviewed_by=reviewer,
        reviewed_at=timezone.now(),
    )
    return _reviewed(listing_id, reviewer, approved, "model.approved", revision=revision)


def _reviewed(
    listing_id: int, reviewer: AbstractBaseUser, changed: int, action: str, **details: Any
) -> ModelListing:
    """After a review's conditional update: refused if it changed nothing, else audited."""
    if not changed:
        raise Conflict(
            "This listing changed since you opened it, or is no longer pending review. "
            "Reload it and review it again.",
            code="review_outdated",
        )
    listing = ModelListing.objects.select_related("org").get(pk=listing_id)
    _audit_review([listing], reviewer, action, **details)
    return listing


def _unapproved(target: ModelListing) -> str | None:
    """Why a submission may not be published as it stands, or None if it may."""
    if target.status != ListingStatus.PENDING_REVIEW:
        return None
    if target.approved_revision is None:
        return f"{target.slug} was never approved"
    if target.approved_revision != target.content_revision:
        return f"{target.slug} changed since it was approved"
    return None


@transaction.atomic
def publish_listings(listings: Any, reviewer: AbstractBaseUser) -> int:
    """Staff: publishes approved submissions, exactly at their approved revision, and the
    operator's own drafts. Refuses (publishing none) if a selected submission is not
    approved at its current revision.

    An org's draft that was never submitted is left alone: its publisher did not ask.
    Returns how many were published.
    """
    now = timezone.now()
    candidates = listings.filter(
        Q(status=ListingStatus.PENDING_REVIEW) | Q(org__isnull=True, status=ListingStatus.DRAFT)
    )
    targets = list(candidates.select_related("org").select_for_update(of=("self",)))
    refused = [reason for reason in map(_unapproved, targets) if reason]
    if refused:
        raise Conflict(
            f"Nothing was published: {'; '.join(refused)}. "
            "Open it, review what it is now and approve that revision first.",
            code="review_outdated",
        )
    # The revision condition again in the UPDATE itself: only what was approved goes out.
    published = _transition(
        ModelListing.objects.filter(pk__in=[t.pk for t in targets]).filter(
            Q(approved_revision=F("content_revision")) | Q(org__isnull=True)
        ),
        (ListingStatus.PENDING_REVIEW, ListingStatus.DRAFT),
        ListingStatus.PUBLISHED,
        reviewed_by=reviewer,
        reviewed_at=now,
        published_at=now,
        review_note="",
    )
    # Each publish freezes exactly what went out (read back: the rows the UPDATE moved).
    for listing in ModelListing.objects.filter(
        pk__in=[t.pk for t in targets], status=ListingStatus.PUBLISHED, published_at=now
    ):
        record_version(listing, reviewer)
    _audit_review(targets, reviewer, "model.published")
    return published


@transaction.atomic
def reject_listings(listings: Any, reviewer: AbstractBaseUser, note: str = "") -> int:
    """Staff: returns submissions to draft. The note (or, when empty, each listing's own
    review note, written in admin) tells the publisher why."""
    targets = list(
        listings.filter(status=ListingStatus.PENDING_REVIEW)
        .select_related("org")
        .select_for_update(of=("self",))
    )
    changes: dict[str, Any] = {"reviewed_by": reviewer, "reviewed_at": timezone.now()}
    if note:
        changes["review_note"] = note
    rejected = _transition(
        ModelListing.objects.filter(pk__in=[t.pk for t in targets]),
        (ListingStatus.PENDING_REVIEW,),
        ListingStatus.DRAFT,
        **changes,
    )
    for listing in targets:
        _audit_review([listing], reviewer, "model.rejected", note=note or listing.review_note)
    return rejected


@transaction.atomic
def return_listing(
    listing_id: int, reviewer: AbstractBaseUser, revision: int, note: str
) -> ModelListing:
    """Staff: returns the submission the reviewer read (`revision`) to draft with a note
    that tells the publisher why (shown on their publishing page).

    Refused, changing nothing, without a note or when the listing moved on since the
    reviewer's page was drawn: the note would answer content nobody read."""
    note = note.strip()
    if not note:
        raise InvalidInput("Write a note telling the publisher what to change.", param="note")
    returned = _transition(
        ModelListing.objects.filter(pk=listing_id, content_revision=revision),
        (ListingStatus.PENDING_REVIEW,),
        ListingStatus.DRAFT,
        review_note=note,
        reviewed_by=reviewer,
        reviewed_at=timezone.now(),
    )
    return _reviewed(listing_id, reviewer, returned, "model.rejected", note=note, revision=revision)


@transaction.atomic
def deprecate_listings(listings: Any, reviewer: AbstractBaseUser) -> int:
    """Staff: deprecated models leave the catalog but keep answering existing clients."""
    targets = list(
        listings.filter(status=ListingStatus.PUBLISHED)
        .select_related("org")
        .select_for_update(of=("self",))
    )
    deprecated = _transition(
        ModelListing.objects.filter(pk__in=[t.pk for t in targets]),
        (ListingStatus.PUBLISHED,),
        ListingStatus.DEPRECATED,
        reviewed_by=reviewer,
        reviewed_at=timezone.now(),
    )
    _audit_review(targets, reviewer, "model.deprecated")
    return deprecated


def _audit_review(
    targets: list[ModelListing], reviewer: AbstractBaseUser, action: str, **data: Any
) -> None:
    """The publishing org's audit log records what staff did to its listings."""
    for listing in targets:
        if listing.org_id is not None:
            audit(listing.org, reviewer, action, listing.slug, **data)
