"""Images on an S3-compatible store (issue #17, production): the "files" storage built
from the environment as production builds it (portal.settings.files_storage), against
moto's S3 server on a local port spoken to over HTTP. Every check of the bucket is made
with boto3 directly, not through the storage under test."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from moto.server import ThreadedMotoServer

from inference import files
from inference.images import clean_image
from inference.models import Prediction, Status, StoredFile
from portal.services import delete_org
from portal.settings import S3_FILES_BACKEND, files_storage
from tests.inference.vision_images import astronaut, data_uri, encode, text_page, upload

pytestmark = pytest.mark.django_db
REGION = "eu-central-1"
EVERYONE = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Bucket:
    name: str
    client: Any  # boto3's S3 client

    def keys(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.name)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()


def configure_s3(monkeypatch, settings, endpoint: str, bucket: str) -> None:
    """The environment an operator sets (README: "Images on S3"); credentials only in
    AWS_* variables, which django-storages reads itself."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "portal-test-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "portal-test-secret-key")
    monkeypatch.setenv("FILES_STORAGE_BACKEND", S3_FILES_BACKEND)
    monkeypatch.setenv("FILES_S3_BUCKET", bucket)
    monkeypatch.setenv("FILES_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("FILES_S3_REGION", REGION)
    monkeypatch.setenv("FILES_S3_ADDRESSING_STYLE", "path")
    settings.STORAGES = {**settings.STORAGES, "files": files_storage()}


@pytest.fixture
def bucket(s3_endpoint, settings, monkeypatch) -> Bucket:
    """A bucket of this test's own, and the files storage pointed at it."""
    name = f"portal-files-{uuid.uuid4().hex[:12]}"
    configure_s3(monkeypatch, settings, s3_endpoint, name)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return Bucket(name, client)


def test_the_files_storage_is_django_storages_s3_on_the_bucket(bucket):
    storage = files.storage()
    assert type(storage).__module__ + "." + type(storage).__name__ == S3_FILES_BACKEND
    assert storage.bucket_name == bucket.name


def test_an_upload_is_a_private_object_and_the_worker_reads_its_bytes(
    org, token_for, api_client, catalog, bucket
):
    response = upload(api_client(token_for(org)), encode(text_page()))
    assert response.status_code == 201, response.content
    stored = StoredFile.objects.get(pk=response.json()["id"])
    assert bucket.keys() == [stored.storage_name] == [f"{org.pk}/{stored.id}.png"]
    in_bucket = bucket.read(stored.storage_name)
    assert in_bucket.startswith(b"\x89PNG") and len(in_bucket) == stored.size
    assert hashlib.sha256(in_bucket).hexdigest() == stored.sha256
    grants = bucket.client.get_object_acl(Bucket=bucket.name, Key=stored.storage_name)["Grants"]
    assert [grant["Permission"] for grant in grants] == ["FULL_CONTROL"]  # the owner's alone
    assert all(grant["Grantee"].get("URI") != EVERYONE for grant in grants)

    prediction = Prediction.objects.create(
        org=org, model=catalog["rapidocr-pp-ocrv4"], input={"image": f"file:{stored.id}"}
    )
    prediction.files.add(stored)
    assert files.input_images(prediction, "ocr")["image"] == in_bucket


def test_an_inline_image_is_stored_in_the_bucket_and_read_back_by_the_worker(
    org, token_for, api_client, bucket, worker_present
):
    raw = encode(astronaut().resize((120, 80)), "JPEG")
    response = api_client(token_for(org)).post(
        "/api/v1/predictions",
        {"model": "mtcnn-face-detection", "input": {"image": data_uri(raw, "image/jpeg")}},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    prediction = Prediction.objects.get(pk=response.json()["id"])
    [held] = prediction.files.all()
    assert bucket.keys() == [held.storage_name]
    read = files.input_images(prediction, "object-detection")["image"]
    assert read == bucket.read(held.storage_name) and read.startswith(b"\xff\xd8")


def test_the_file_page_serves_the_object_to_its_org_only(
    org, owner, teammate, outsider, client_for, bucket
):
    stored = files.upload(org, owner, encode(text_page()), "image/png")
    url = reverse("file_content", args=[stored.id])
    for member in (owner, teammate):
        response = client_for(member, org).get(url)
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == bucket.read(stored.storage_name)
    assert client_for(outsider).get(url).status_code == 404

    bucket.client.delete_object(Bucket=bucket.name, Key=stored.storage_name)
    assert client_for(owner, org).get(url).status_code == 404  # bytes gone: not an error


def test_deleting_a_file_removes_its_object(org, outsider_org, token_for, api_client, bucket):
    client = api_client(token_for(org))
    file_id = upload(client, encode(text_page())).json()["id"]
    theirs = upload(api_client(token_for(outsider_org)), encode(text_page())).json()["id"]
    assert api_client(token_for(outsider_org)).delete(f"/api/v1/files/{file_id}").status_code == 404
    assert len(bucket.keys()) == 2

    assert client.delete(f"/api/v1/files/{file_id}").status_code == 204
    assert bucket.keys() == [StoredFile.objects.get(pk=theirs).storage_name]


def test_expiry_removes_the_objects_no_kept_input_holds(
    org, token_for, api_client, catalog, bucket
):
    client = api_client(token_for(org))
    loose_id = upload(client, encode(text_page())).json()["id"]
    held_id = upload(client, encode(text_page())).json()["id"]
    prediction = Prediction.objects.create(
        org=org, model=catalog["rapidocr-pp-ocrv4"], input={"image": f"file:{held_id}"},
        status=Status.SUCCEEDED, completed_at=timezone.now(),
    )  # fmt: skip
    prediction.files.add(held_id)
    StoredFile.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert files.expire_files() == 1
    held = StoredFile.objects.get()
    assert held.pk == held_id and loose_id != held_id
    assert bucket.keys() == [held.storage_name]


def test_deleting_the_org_removes_its_objects_once_that_commits(
    org, owner, outsider_org, token_for, api_client, bucket, django_capture_on_commit_callbacks
):
    upload(api_client(token_for(org)), encode(text_page()))
    upload(api_client(token_for(org)), encode(astronaut(), "JPEG"), "a.jpg", "image/jpeg")
    kept = upload(api_client(token_for(outsider_org)), encode(text_page())).json()["id"]
    assert len(bucket.keys()) == 3

    with django_capture_on_commit_callbacks(execute=True):
        delete_org(org, owner)

    assert bucket.keys() == [StoredFile.objects.get(pk=kept).storage_name]


def test_a_transaction_that_fails_after_the_upload_removes_the_object(org, owner, bucket):
    image = clean_image(encode(text_page()), "file", "image/png")
    with pytest.raises(RuntimeError), files.removed_on_failure() as written, transaction.atomic():
        files.store(org, owner, image, files.expiry(), written)
        assert bucket.keys() == written  # the bytes went in before the row
        raise RuntimeError("the admission's transaction fails after the row")
    assert bucket.keys() == [] and not StoredFile.objects.exists()


def test_a_save_the_store_refuses_leaves_no_row(org, owner, bucket):
    bucket.client.delete_bucket(Bucket=bucket.name)
    with pytest.raises(ClientError, match="NoSuchBucket"):
        files.upload(org, owner, encode(text_page()), "image/png")
    assert not StoredFile.objects.exists()
