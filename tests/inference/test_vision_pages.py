"""Vision in the browser, server side (issue #17): the org's image served to its members
(the prediction page's input, the playground's "Open in playground"), the prediction page
of an OCR or detection prediction, the playground's start for vision models, and the code
its API tab shows (upload a file, then predict with it)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from inference import files
from inference.models import Prediction, Status, StoredFile
from inference.presentation import input_preview, output_view
from inference.retention import erase_expired_predictions
from models_hub.demo import load_demo_catalog
from models_hub.snippets import snippets_for
from tests.inference.vision_images import encode, text_page

pytestmark = pytest.mark.django_db
OCR = "rapidocr-pp-ocrv4"
FACES = "mtcnn-face-detection"
OCR_OUTPUT = [
    {"text": "Invoice number 4217", "score": 0.98,
     "box": [[20, 30], [400, 30], [400, 75], [20, 75]]},
    {"text": "Total due: 96 euros", "score": 0.97,
     "box": [[20, 110], [420, 110], [420, 155], [20, 155]]},
]  # fmt: skip


@pytest.fixture
def catalog(db):
    return {listing.slug: listing for listing in load_demo_catalog()}


@pytest.fixture
def page_png() -> bytes:
    return encode(text_page())


@pytest.fixture
def stored(org, owner, files_in_tmp, page_png) -> StoredFile:
    return files.upload(org, owner, page_png, None)


def ocr_prediction(org, owner, catalog, stored: StoredFile, **extra) -> Prediction:
    prediction = Prediction.objects.create(
        org=org, user=owner, model=catalog[OCR], input={"image": f"file:{stored.id}"},
        output=OCR_OUTPUT, status=Status.SUCCEEDED, completed_at=timezone.now(), **extra,
    )  # fmt: skip
    prediction.files.add(stored)
    return prediction


def content(client: Client, file_id: str):
    return client.get(reverse("file_content", args=[file_id]))


def body(response) -> bytes:
    return b"".join(response.streaming_content)


# --- The file's bytes ----------------------------------------------------------------------


def test_members_of_the_org_get_the_stored_bytes_inline_and_unsniffable(
    stored, owner, teammate, org, client_for, files_in_tmp
):
    kept = (files_in_tmp / stored.storage_name).read_bytes()
    for user in (owner, teammate):
        response = content(client_for(user, org), stored.id)
        assert response.status_code == 200
        assert response["Content-Type"] == stored.content_type == "image/png"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Disposition"] == "inline"
        assert "private" in response["Cache-Control"]
        assert body(response) == kept


def test_another_org_gets_the_same_404_as_a_missing_file(
    stored, outsider, outsider_org, owner, client_for
):
    client = client_for(outsider, outsider_org)
    theirs = content(client, stored.id)
    missing = content(client, "x" * len(stored.id))
    assert theirs.status_code == missing.status_code == 404
    # The same page, which names neither id (its nonce and CSRF token differ per request).
    assert stored.id.encode() not in theirs.content
    assert b"x" * len(stored.id) not in missing.content
    assert len(theirs.content) == len(missing.content)
    # The owner working in another of their orgs does not see it either.
    assert content(client_for(owner), stored.id).status_code == 404


def test_signed_out_visitors_are_sent_to_log_in_and_writes_are_refused(
    stored, owner, org, client_for
):
    response = Client().get(reverse("file_content", args=[stored.id]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client = client_for(owner, org)
    url = reverse("file_content", args=[stored.id])
    assert client.post(url).status_code == 405
    assert client.delete(url).status_code == 405
    assert StoredFile.objects.filter(pk=stored.id).exists()


def test_an_expired_file_stays_visible_while_a_kept_input_holds_it_and_goes_with_it(
    stored, owner, org, client_for, catalog, files_in_tmp, page_png
):
    loose = files.upload(org, owner, page_png, None)
    ocr_prediction(org, owner, catalog, stored, created_at=timezone.now() - timedelta(days=40))
    StoredFile.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    client = client_for(owner, org)
    assert content(client, loose.id).status_code == 404  # expired, nothing holds it
    assert content(client, stored.id).status_code == 200  # the prediction page needs it

    Prediction.objects.update(completed_at=timezone.now() - timedelta(days=40))
    assert erase_expired_predictions() == 1
    assert content(client, stored.id).status_code == 404  # erased with the input


def test_bytes_gone_from_storage_answer_404_not_an_error(stored, owner, org, client_for):
    files.storage().delete(stored.storage_name)
    assert content(client_for(owner, org), stored.id).status_code == 404


def test_an_over_long_id_is_not_looked_up(owner, org, client_for):
    assert content(client_for(owner, org), "a" * 500).status_code == 404


# --- The prediction's page -----------------------------------------------------------------


def script_json(html: str, element_id: str):
    found = re.search(
        rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S
    )
    assert found, element_id
    return json.loads(found.group(1))


def test_an_ocr_predictions_page_shows_its_image_and_what_was_read(
    stored, owner, org, client_for, catalog
):
    prediction = ocr_prediction(org, owner, catalog, stored)
    response = client_for(owner, org).get(reverse("prediction_detail", args=[prediction.id]))
    html = response.content.decode()
    image_url = reverse("file_content", args=[stored.id])
    assert f'<img id="input-image" src="{image_url}"' in html
    # The overlay's data, drawn by static/js/playground-results.js, and the text without it.
    assert script_json(html, "prediction-output-data") == OCR_OUTPUT
    assert script_json(html, "prediction-input-data") == {"image": f"file:{stored.id}"}
    assert 'id="output-rendered" data-task="ocr"' in html
    assert "<strong>Invoice number 4217</strong> 98.0%" in html
    assert "playground-image.js" in html and "playground-results.js" in html
    # The image is the input, not a parameter; the input is reopened in the playground.
    assert 'class="facts parameters"' not in html
    assert f"?from={prediction.id}#playground" in html
    # Copy as curl uploads an image rather than pointing at a file that will expire.
    assert "-F file=@image.png" in html
    # An image task counts no tokens: no "0 in / 0 out".
    assert "<dt>Tokens</dt>" not in html


def test_a_detection_predictions_parameters_and_an_inline_image(owner, org, client_for, catalog):
    inline = "data:image/png;base64,iVBORw0KGgo="
    prediction = Prediction.objects.create(
        org=org, user=owner, model=catalog[FACES], input={"image": inline, "min_score": 0.5},
        output=[{"label": "face", "score": 0.999, "box": [180, 60, 260, 170]}],
        status=Status.SUCCEEDED,
    )  # fmt: skip
    html = client_for(owner, org).get(reverse("prediction_detail", args=[prediction.id]))
    html = html.content.decode()
    assert f'src="{inline}"' in html
    assert "<dt><code>min_score</code></dt><dd><code>0.5</code></dd>" in html
    assert "<strong>face</strong> 99.9%" in html
    assert input_preview(prediction) == "An image"


def test_output_that_is_not_boxes_is_shown_as_json(owner, org, catalog):
    prediction = Prediction(org=org, model=catalog[OCR], output={"unexpected": True})
    assert output_view(prediction).kind == "json"
    prediction.output = []
    view = output_view(prediction)
    assert view.kind == "vision" and view.labels == ()


def test_an_erased_predictions_page_shows_no_image(stored, owner, org, client_for, catalog):
    prediction = ocr_prediction(org, owner, catalog, stored, data_removed_at=timezone.now())
    html = client_for(owner, org).get(reverse("prediction_detail", args=[prediction.id]))
    assert b"input-image" not in html.content and stored.id.encode() not in html.content


# --- The playground and its API tab ---------------------------------------------------------


def model_page(client: Client, slug: str, prediction_id: str | None = None) -> str:
    query = {"from": prediction_id} if prediction_id else {}
    return client.get(reverse("model_detail", args=[slug]), query).content.decode()


def test_the_playground_asks_for_an_image_and_shows_the_detectors_default_score(
    owner, client_for, catalog
):
    client = client_for(owner)
    ocr = model_page(client, OCR)
    # The example's blank pixel only proves the example valid: the form starts empty.
    assert script_json(ocr, "playground-example") == {}
    assert "playground-image.js" in ocr
    faces = model_page(client, FACES)
    assert script_json(faces, "playground-example") == {"min_score": 0.9}
    assert script_json(faces, "playground-defaults") == {"min_score": 0.9}
    snippets = {s["key"]: s for s in script_json(faces, "playground-snippets")}
    assert list(snippets) == ["curl", "python", "javascript"]


def test_open_in_playground_prefills_the_predictions_file(stored, owner, org, client_for, catalog):
    prediction = ocr_prediction(org, owner, catalog, stored)
    html = model_page(client_for(owner, org), OCR, prediction.id)
    assert script_json(html, "playground-example") == {"image": f"file:{stored.id}"}
    assert 'id="playground-prefilled"' in html


def test_vision_snippets_upload_the_image_then_predict_with_its_file(catalog):
    listing = catalog[FACES]
    snippets = {
        s.key: s.code
        for s in snippets_for(listing, "https://portal.test/", {"image": "data:", "min_score": 0.5})
    }
    assert set(snippets) == {"curl", "python", "javascript"}  # the /v1 layer has no vision
    curl = snippets["curl"]
    assert "curl -s -X POST https://portal.test/api/v1/files" in curl
    assert "-F file=@image.png | jq -r .id)" in curl
    assert '"image": "file:\'"$FILE_ID"\'"' in curl and '"min_score": 0.5' in curl
    assert "data:" not in curl
    python = snippets["python"]
    assert 'files={"file": image}' in python and '"image": f"file:{file_id}",' in python
    compile(python, "snippet.py", "exec")  # valid Python
    javascript = snippets["javascript"]
    assert 'form.append("file"' in javascript and '"image": `file:${uploaded.id}`' in javascript


def test_the_api_tab_formats_a_vision_call_without_the_images_bytes(owner, client_for, catalog):
    response = client_for(owner).post(
        reverse("playground_snippets", args=[OCR]),
        {"input": {"image": "data:"}},
        content_type="application/json",
    )
    assert response.status_code == 200
    [curl, *_] = response.json()["snippets"]
    assert "-F file=@image.png" in curl["code"]
    assert '"model": "rapidocr-pp-ocrv4"' in curl["code"]
