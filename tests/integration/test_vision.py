"""Vision end to end on the real stack (issue #17): an image uploaded or sent inline, the
CPU worker running the real offline models (PP-OCRv4, MTCNN), priced per image."""

from __future__ import annotations

import httpx
import pytest

from billing.demo import load_demo_prices
from inference import files
from inference.models import StoredFile
from models_hub.demo import load_demo_catalog
from tests.inference.vision_images import (
    astronaut,
    data_uri,
    encode,
    noise,
    stored_sideways,
    text_page,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
WAIT = {"Prefer": "wait=60"}


@pytest.fixture
def api(stack, org, token_for):
    load_demo_catalog()
    load_demo_prices()
    with httpx.Client(
        base_url=stack.base_url,
        headers={"Authorization": f"Bearer {token_for(org)}"},
        timeout=90,
    ) as client:
        yield client
    # The stack shares this process's storage folder: leave no bytes behind.
    files.delete_files(StoredFile.objects.all())


def predict(api: httpx.Client, model: str, image: str, **extra) -> dict:
    body = {"model": model, "input": {"image": image, **extra}}
    response = api.post("/api/v1/predictions", json=body, headers=WAIT)
    assert response.status_code == 201, response.text
    prediction = response.json()
    assert prediction["status"] == "succeeded", prediction
    return prediction


def test_ocr_of_an_uploaded_page_reads_its_words_and_costs_one_image(api):
    uploaded = api.post("/api/v1/files", files={"file": ("page.png", encode(text_page()))})
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]

    prediction = predict(api, "rapidocr-pp-ocrv4", f"file:{file_id}")
    assert prediction["input"] == {"image": f"file:{file_id}"}
    texts = [line["text"].replace(" ", "").lower() for line in prediction["output"]]
    assert texts == ["invoicenumber4217", "totaldue:96euros"]
    assert prediction["cost"]["amount"] == "0.001"
    assert prediction["cost"]["billed"]["requests"] == 1


def test_faces_in_an_inline_exif_rotated_photo_come_back_as_displayed(api):
    prediction = predict(
        api, "mtcnn-face-detection", data_uri(stored_sideways(astronaut()), "image/jpeg")
    )
    [face] = prediction["output"]
    assert face["label"] == "face" and face["score"] >= 0.9
    x1, y1, x2, y2 = face["box"]
    # The upright photo's face (see test_vision_runners.FACE_REGION), not a sideways one.
    assert 170 <= x1 < x2 <= 280 and 50 <= y1 < y2 <= 185
    file_id = prediction["input"]["image"].removeprefix("file:")
    assert api.get(f"/api/v1/files/{file_id}").json()["width"] == 512


def test_the_predictions_route_takes_an_inline_image_up_to_the_image_limit(api):
    """14 MiB bodies reach the image check (a clear 400 naming the limit), not a 413."""
    too_big = data_uri(encode(noise(1900, 1900)))
    assert 10 * 1024 * 1024 * 4 / 3 < len(too_big) < 14 * 1024 * 1024
    response = api.post(
        "/api/v1/predictions", json={"model": "rapidocr-pp-ocrv4", "input": {"image": too_big}}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "input.image"
    assert "larger than 10485760 bytes" in response.json()["error"]["message"]
    assert not StoredFile.objects.exists()
