"""Images in (issue #17): uploads and inline data: URIs are validated, re-encoded upright
without metadata, stored per org, and erased by expiry and retention. Bad input is a
clear 400 that stores nothing."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from PIL import Image

from inference import files
from inference.models import Prediction, Status, StoredFile
from inference.retention import erase_expired_predictions
from portal.errors import InvalidInput
from portal.services import delete_org
from tests.inference.vision_images import (
    astronaut,
    data_uri,
    encode,
    noise,
    png_bomb,
    stored_sideways,
    text_page,
    upload,
)

pytestmark = pytest.mark.django_db


def stored_paths(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


# --- Bad input -----------------------------------------------------------------------------


def _polyglot_zip() -> bytes:
    return encode(text_page()) + b"PK\x03\x04" + b"\x00" * 26 + b"payload.js"


BAD_IMAGES = {
    "not an image": (b"hello, this is text", "not a PNG, JPEG or WebP"),
    "html named png": (b"<html><script>alert(1)</script></html>", "not a PNG, JPEG or WebP"),
    "gif": (encode(Image.new("RGB", (4, 4)), "GIF"), "not a PNG, JPEG or WebP"),
    "truncated png": (encode(astronaut())[:20_000], "not a complete, readable image"),
    "truncated jpeg": (encode(astronaut(), "JPEG")[:5_000], "not a complete, readable image"),
    "png with a zip after it": (_polyglot_zip(), "data after the end of the image"),
    "jpeg with html after it": (
        encode(text_page(), "JPEG") + b"<script>alert(1)</script>",
        "data after the end of the image",
    ),
    "bomb: 50000 px a side": (png_bomb(50_000, 50_000), "at most 10000 pixels a side"),
    "bomb: 9000x9000 pixels": (png_bomb(9_000, 9_000), "at most 40000000 pixels in all"),
    "empty": (b"", "is empty"),
}


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_a_bad_upload_is_a_clear_400_that_stores_nothing(
    kind, org, token_for, api_client, files_in_tmp
):
    raw, why = BAD_IMAGES[kind]
    response = upload(api_client(token_for(org)), raw)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert why in error["message"] and error["param"] == "file"
    assert not StoredFile.objects.exists() and stored_paths(files_in_tmp) == []


def test_an_upload_over_10_mib_is_refused_before_it_is_decoded(
    org, token_for, api_client, files_in_tmp
):
    raw = encode(noise(1900, 1900))  # random pixels do not compress: ~10.8 MB
    assert len(raw) > 10 * 1024 * 1024
    response = upload(api_client(token_for(org)), raw)
    assert response.status_code == 400
    assert "larger than 10485760 bytes" in response.json()["error"]["message"]
    assert not StoredFile.objects.exists() and stored_paths(files_in_tmp) == []


def test_exif_orientation_is_applied_and_every_piece_of_metadata_is_stripped(
    org, token_for, api_client, files_in_tmp
):
    raw = stored_sideways(astronaut().resize((400, 300)))
    with Image.open(io.BytesIO(raw)) as sent:
        assert sent.size == (300, 400) and sent.getexif()  # stored sideways, with GPS
    response = upload(api_client(token_for(org)), raw, "photo.jpg", "image/jpeg")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["width"], body["height"], body["content_type"]) == (400, 300, "image/jpeg")
    [path] = stored_paths(files_in_tmp)
    stored = path.read_bytes()
    assert b"SecretCam" not in stored and b"Exif" not in stored
    with Image.open(io.BytesIO(stored)) as kept:
        assert kept.size == (400, 300)
        assert not kept.getexif() and "icc_profile" not in kept.info


def test_a_phones_two_picture_jpeg_is_kept_as_its_first_picture(
    org, token_for, api_client, files_in_tmp
):
    first, second = astronaut().resize((320, 240)), text_page()
    out = io.BytesIO()
    first.save(out, "MPO", save_all=True, append_images=[second])
    with Image.open(io.BytesIO(out.getvalue())) as sent:
        assert sent.format == "MPO" and sent.n_frames == 2
    response = upload(api_client(token_for(org)), out.getvalue(), "photo.jpg", "image/jpeg")
    assert response.status_code == 201, response.content
    assert (response.json()["width"], response.json()["height"]) == (320, 240)
    [path] = stored_paths(files_in_tmp)
    with Image.open(path) as kept:
        assert kept.format == "JPEG" and getattr(kept, "n_frames", 1) == 1


def test_an_animated_png_is_refused(org, token_for, api_client, files_in_tmp):
    frames = [Image.new("RGB", (8, 8), color) for color in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "PNG", save_all=True, append_images=frames[1:])
    response = upload(api_client(token_for(org)), out.getvalue())
    assert response.status_code == 400
    assert "animated" in response.json()["error"]["message"]
    assert not StoredFile.objects.exists()


# --- Tenancy -------------------------------------------------------------------------------


def test_files_belong_to_the_org_owner_teammate_and_outsider(
    org, outsider_org, owner, teammate, outsider, token_for, api_client, client_for, files_in_tmp
):
    created = upload(api_client(token_for(org)), encode(text_page()))
    assert created.status_code == 201
    file_id = created.json()["id"]
    assert created.json()["expires_at"]

    teammates = client_for(teammate, org)
    assert teammates.get(f"/api/v1/files/{file_id}").json()["id"] == file_id

    theirs = api_client(token_for(outsider_org))
    for method in ("get", "delete"):
        hidden = getattr(theirs, method)(f"/api/v1/files/{file_id}")
        missing = getattr(theirs, method)(f"/api/v1/files/{'x' * len(file_id)}")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json() == missing.json()
    assert StoredFile.objects.filter(pk=file_id).exists()

    deleted = client_for(owner, org).delete(f"/api/v1/files/{file_id}")
    assert deleted.status_code == 204
    assert not StoredFile.objects.exists() and stored_paths(files_in_tmp) == []
    assert teammates.get(f"/api/v1/files/{file_id}").status_code == 404


def test_a_read_token_may_look_but_not_upload(org, token_for, api_client, files_in_tmp):
    reader = api_client(token_for(org, scopes=["read"]))
    assert upload(reader, encode(text_page())).status_code == 403
    assert not StoredFile.objects.exists()


def test_the_org_file_quota_refuses_the_next_upload_and_stores_nothing(
    org, token_for, api_client, files_in_tmp, settings
):
    settings.FILES_MAX_PER_ORG = 1
    client = api_client(token_for(org))
    assert upload(client, encode(text_page())).status_code == 201
    refused = upload(client, encode(text_page()))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "file_quota_exceeded"
    assert StoredFile.objects.count() == 1 and len(stored_paths(files_in_tmp)) == 1


# --- In prediction inputs ------------------------------------------------------------------


def predict(client, model: str, image: str, **extra):
    return client.post(
        "/api/v1/predictions",
        {"model": model, "input": {"image": image, **extra}},
        content_type="application/json",
    )


def test_an_inline_image_becomes_a_file_the_prediction_holds(
    org, token_for, api_client, files_in_tmp, worker_present
):
    raw = stored_sideways(astronaut().resize((200, 100)))
    response = predict(
        api_client(token_for(org)), "mtcnn-face-detection", data_uri(raw, "image/jpeg")
    )
    assert response.status_code == 201, response.content
    prediction = Prediction.objects.get(pk=response.json()["id"])
    [held] = prediction.files.all()
    assert prediction.input == {"image": f"file:{held.id}"}
    assert (held.org, held.width, held.height) == (org, 200, 100)
    assert b"SecretCam" not in (files_in_tmp / held.storage_name).read_bytes()
    # What the worker reads: the clean bytes of the file linked to this prediction.
    assert files.input_images(prediction, "object-detection")["image"].startswith(b"\xff\xd8")


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ("https://example.com/cat.png", "must be a data:image/(png|jpeg|webp);base64 URI"),
        ("file:///etc/passwd", "must be a data:image/(png|jpeg|webp);base64 URI"),
        ("data:image/svg+xml;base64,PHN2Zz4=", "must be a data:image/(png|jpeg|webp);base64 URI"),
        ("data:image/png;base64,not base64!", "is not valid base64"),
        (data_uri(encode(text_page(), "JPEG"), "image/png"), "declared image/png"),
        (data_uri(png_bomb(20_000, 20_000)), "at most 10000 pixels a side"),
        (data_uri(_polyglot_zip()), "data after the end of the image"),
    ],
)
def test_a_bad_image_in_an_input_is_a_400_that_creates_nothing(
    image, why, org, token_for, api_client, files_in_tmp, worker_present, receiver
):
    response = predict(api_client(token_for(org)), "rapidocr-pp-ocrv4", image)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert why in error["message"] and error["param"] == "input.image"
    assert not Prediction.objects.exists() and not StoredFile.objects.exists()
    assert stored_paths(files_in_tmp) == []


def test_a_url_is_never_fetched(org, token_for, api_client, files_in_tmp, worker_present, receiver):
    response = predict(api_client(token_for(org)), "rapidocr-pp-ocrv4", receiver.url)
    assert response.status_code == 400
    assert receiver.received == []


def test_another_orgs_file_is_refused_like_a_missing_one(
    org, outsider_org, token_for, api_client, files_in_tmp, worker_present
):
    theirs = upload(api_client(token_for(outsider_org)), encode(text_page())).json()["id"]
    ours = api_client(token_for(org))
    hidden = predict(ours, "rapidocr-pp-ocrv4", f"file:{theirs}")
    missing = predict(ours, "rapidocr-pp-ocrv4", f"file:{'x' * len(theirs)}")
    assert hidden.status_code == missing.status_code == 400
    assert hidden.json()["error"]["message"].replace(theirs, "ID") == missing.json()["error"][
        "message"
    ].replace("x" * len(theirs), "ID")
    assert not Prediction.objects.exists()


# --- Expiry and retention ------------------------------------------------------------------


def test_expired_files_go_unless_a_kept_input_holds_them_and_retention_erases_those(
    org, owner, token_for, api_client, catalog, files_in_tmp
):
    client = api_client(token_for(org))
    loose_id = upload(client, encode(text_page())).json()["id"]
    held_id = upload(client, encode(text_page())).json()["id"]
    prediction = Prediction.objects.create(
        org=org, model=catalog["rapidocr-pp-ocrv4"], input={"image": f"file:{held_id}"},
        status=Status.SUCCEEDED, completed_at=timezone.now() - timedelta(days=31),
    )  # fmt: skip
    prediction.files.add(held_id)
    assert len(stored_paths(files_in_tmp)) == 2

    later = timezone.now() + timedelta(hours=25)
    StoredFile.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get(f"/api/v1/files/{loose_id}").status_code == 404  # expired: gone
    assert files.expire_files(later) == 1
    assert list(StoredFile.objects.values_list("pk", flat=True)) == [held_id]
    assert len(stored_paths(files_in_tmp)) == 1

    assert erase_expired_predictions() == 1
    assert not StoredFile.objects.exists() and stored_paths(files_in_tmp) == []


def test_the_worker_reads_only_files_admitted_with_the_prediction(
    org, token_for, api_client, catalog, files_in_tmp
):
    """A row written some other way (an inline image never validated, a file the
    prediction was not admitted with) is refused before anything is decoded."""
    file_id = upload(api_client(token_for(org)), encode(text_page())).json()["id"]
    ocr = catalog["rapidocr-pp-ocrv4"]
    for image in (f"file:{file_id}", data_uri(encode(text_page()))):
        prediction = Prediction.objects.create(org=org, model=ocr, input={"image": image})
        with pytest.raises(InvalidInput, match="the image was deleted before the prediction ran"):
            files.input_images(prediction, "ocr")
    prediction.files.add(file_id)
    prediction.input = {"image": f"file:{file_id}"}
    assert files.input_images(prediction, "ocr")["image"].startswith(b"\x89PNG")


def test_deleting_the_org_deletes_its_files_bytes(
    org,
    owner,
    outsider_org,
    token_for,
    api_client,
    files_in_tmp,
    django_capture_on_commit_callbacks,
):
    upload(api_client(token_for(org)), encode(text_page()))
    upload(api_client(token_for(org)), encode(astronaut(), "JPEG"), "a.jpg", "image/jpeg")
    kept = upload(api_client(token_for(outsider_org)), encode(text_page())).json()["id"]
    assert len(stored_paths(files_in_tmp)) == 3

    with django_capture_on_commit_callbacks(execute=True):
        delete_org(org, owner)

    assert list(StoredFile.objects.values_list("pk", flat=True)) == [kept]
    assert stored_paths(files_in_tmp) == [files_in_tmp / StoredFile.objects.get().storage_name]
