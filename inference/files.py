"""Stored images (API.md "Files"): uploads, inline data: URIs in prediction inputs, the
worker's read, expiry and erasure.

Only bytes from `inference.images.clean_image` are ever written, under a name the portal
chooses; a worker reads a file only through `input_images`: one linked to the prediction
it runs, of the same org. Bytes live in the "files" storage (settings.STORAGES): the var
folder in development, an S3-compatible bucket in production.

Lifetime: a file, uploaded or inline, expires FILE_TTL_SECONDS after it was made (until
then an inline one can be used again as `file:<id>`), but stays while a prediction that
used it keeps its input; retention erases it with the last such input, and its org may
delete it at any time.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, QuerySet, Sum
from django.utils import timezone

from inference.images import CleanImage, clean_image, decode_data_uri, file_ref, image_fields
from inference.models import Prediction, StoredFile
from portal.errors import Conflict, InvalidInput
from portal.models import Organization

logger = logging.getLogger(__name__)

DELETE_BATCH_SIZE = 500


def storage() -> Storage:
    return storages["files"]


# --- Writing -----------------------------------------------------------------------------


@contextmanager
def removed_on_failure() -> Iterator[list[str]]:
    """Wrap the transaction that stores files: bytes are written before their rows, so a
    rollback (quota refused, a failed insert) must take the written bytes away too."""
    written: list[str] = []
    try:
        yield written
    except BaseException:
        for name in written:
            storage().delete(name)
        raise


def _check_org_quota(org: Organization, adding: int) -> None:
    """Under the org's row lock, so that two uploads cannot both take the last slot."""
    Organization.objects.select_for_update().filter(pk=org.pk).first()
    held = StoredFile.objects.filter(org=org).aggregate(count=Count("pk"), size=Sum("size"))
    if held["count"] + 1 > settings.FILES_MAX_PER_ORG:
        raise Conflict(
            f"Your organization holds {settings.FILES_MAX_PER_ORG} files, its limit; "
            "delete some or wait for them to expire.",
            code="file_quota_exceeded",
        )
    if (held["size"] or 0) + adding > settings.FILES_MAX_BYTES_PER_ORG:
        raise Conflict(
            f"Your organization's files would pass {settings.FILES_MAX_BYTES_PER_ORG} bytes, "
            "its limit; delete some or wait for them to expire.",
            code="file_quota_exceeded",
        )


def store(
    org: Organization, owner: Any, image: CleanImage, expires_at: datetime, written: list[str]
) -> StoredFile:
    """Saves clean bytes and their row, inside `removed_on_failure` and a transaction."""
    _check_org_quota(org, len(image.data))
    stored = StoredFile(
        org=org,
        owner=owner if owner is not None and owner.pk else None,
        content_type=image.content_type,
        size=len(image.data),
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(image.data).hexdigest(),
        expires_at=expires_at,
    )
    name = storage().save(f"{org.pk}/{stored.id}.{image.extension}", ContentFile(image.data))
    written.append(name)
    stored.storage_name = name
    stored.save(force_insert=True)
    return stored


def expiry() -> datetime:
    return timezone.now() + timedelta(seconds=settings.FILE_TTL_SECONDS)


def upload(org: Organization, owner: Any, raw: bytes, declared_type: str | None) -> StoredFile:
    """POST /api/v1/files: validates, re-encodes and stores."""
    image = clean_image(raw, "file", declared_type)
    with removed_on_failure() as written, transaction.atomic():
        return store(org, owner, image, expiry(), written)


def live_files(org: Organization) -> QuerySet[StoredFile]:
    """The org's files a caller may still see or use (an expired one awaiting the sweep
    is gone already, as far as callers can tell)."""
    return StoredFile.objects.filter(org=org, expires_at__gt=timezone.now())


# --- Prediction inputs -------------------------------------------------------------------


@dataclass
class InputImages:
    """A prediction input's images, checked before its transaction: the inline ones
    cleaned (the costly part), the referenced ones found in the org."""

    inline: dict[str, CleanImage] = field(default_factory=dict)
    referenced: dict[str, StoredFile] = field(default_factory=dict)


def check_input_images(org: Organization, task: str, data: dict[str, Any]) -> InputImages:
    """Every image field is a data: URI (validated here) or `file:<id>` of a live file of
    this org; another org's file is "not found" exactly like a missing one. Any other
    string (an http URL, a path) is refused and never fetched."""
    images = InputImages()
    for name in image_fields(task):
        value = data.get(name)
        if not isinstance(value, str):
            continue  # the schema already required it where it is required
        param = f"input.{name}"
        file_id = file_ref(value)
        if file_id is not None:
            stored = live_files(org).filter(pk=file_id).first()
            if stored is None:
                raise InvalidInput(
                    f"{param}: file {file_id!r} not found.", param=param, code="file_not_found"
                )
            images.referenced[name] = stored
        else:
            raw, declared = decode_data_uri(value, param)
            images.inline[name] = clean_image(raw, param, declared)
    return images


def store_input_images(
    principal: Any, data: dict[str, Any], images: InputImages, written: list[str]
) -> tuple[dict[str, Any], list[StoredFile]]:
    """Inside the admission transaction: inline images stored as files; returns the input
    to store (every image a `file:<id>`) and the files the prediction holds."""
    stored_input = copy.deepcopy(data)
    held = list(images.referenced.values())
    for name, image in images.inline.items():
        stored = store(principal.org, principal.user, image, expiry(), written)
        stored_input[name] = f"file:{stored.id}"
        held.append(stored)
    return stored_input, held


def input_images(prediction: Prediction, task: str) -> dict[str, Any]:
    """The worker's view of the input: each `file:<id>` replaced by the clean bytes of a
    file linked to this prediction (so of its org, validated at admission)."""
    data = dict(prediction.input)
    for name in image_fields(task):
        file_id = file_ref(data.get(name) or "")
        stored = prediction.files.filter(pk=file_id, org_id=prediction.org_id).first()
        if file_id is None or stored is None:
            raise InvalidInput(
                f"input.{name}: the image was deleted before the prediction ran.",
                param=f"input.{name}",
            )
        with storage().open(stored.storage_name, "rb") as handle:
            data[name] = handle.read()
    return data


# --- Removal -----------------------------------------------------------------------------


def delete_files(files: QuerySet[StoredFile]) -> int:
    """Bytes first, then rows: a crash between leaves a row whose read fails cleanly,
    removed by the next sweep, rather than bytes nobody knows about."""
    deleted = 0
    while batch := list(files.values_list("pk", "storage_name")[:DELETE_BATCH_SIZE]):
        for _, name in batch:
            storage().delete(name)
        deleted += (
            StoredFile.objects.filter(pk__in=[pk for pk, _ in batch])
            .delete()[1]
            .get(StoredFile._meta.label, 0)
        )
    return deleted


def _unheld(files: QuerySet[StoredFile]) -> QuerySet[StoredFile]:
    """Those no prediction still keeping its input refers to."""
    keeping = Prediction.objects.filter(files=OuterRef("pk"), data_removed_at__isnull=True)
    return files.exclude(Exists(keeping))


def expire_files(now: datetime | None = None) -> int:
    """The periodic sweep (with retention's): expired files no kept input holds."""
    now = now or timezone.now()
    return delete_files(_unheld(StoredFile.objects.filter(expires_at__lte=now)))


def erase_for_predictions(prediction_ids: Iterable[str]) -> int:
    """Retention erased these predictions' inputs: their images go too, unless a newer
    prediction that still keeps its input uses the same file."""
    used = StoredFile.objects.filter(predictions__in=list(prediction_ids)).distinct()
    return delete_files(_unheld(StoredFile.objects.filter(pk__in=used.values("pk"))))


def forget_org_files(org: Organization) -> None:
    """The org is being deleted (its rows go by cascade): its bytes go once that commits,
    so a deletion that rolls back keeps every file readable."""
    names = list(StoredFile.objects.filter(org=org).values_list("storage_name", flat=True))
    if names:
        transaction.on_commit(partial(_delete_bytes, names), robust=True)


def forget_files_of_deleted_org(sender: type, instance: Organization, **kwargs: Any) -> None:
    """pre_delete receiver for Organization (connected in InferenceConfig.ready)."""
    forget_org_files(instance)


def _delete_bytes(names: list[str]) -> None:
    for name in names:
        storage().delete(name)


def delete_file(stored: StoredFile) -> None:
    """DELETE /api/v1/files/{id}: the owner's wish wins over any prediction holding it."""
    delete_files(StoredFile.objects.filter(pk=stored.pk))
