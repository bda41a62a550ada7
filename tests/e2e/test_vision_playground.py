"""Vision in a real browser on the live stack (issue #17): an image chosen, dropped or
pasted into the playground, checked before it is sent, run through the real OCR and face
models on the CPU worker, and drawn with its boxes over it, at desktop and phone width;
the prediction's page draws the same, and "Open in playground" brings the image back."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys

import pytest
from playwright.sync_api import Page, expect

from inference import files
from inference.models import Prediction, Status, StoredFile
from portal import services
from portal.models import Organization
from tests.e2e.conftest import log_in, screenshot
from tests.e2e.test_mobile import OVERFLOW_JS
from tests.e2e.test_playground import RECORD_VIOLATIONS_JS
from tests.inference.vision_images import astronaut, encode, text_page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
OCR = "rapidocr-pp-ocrv4"
FACES = "mtcnn-face-detection"
# The first run on a worker process loads the model.
RUN_TIMEOUT_MS = 180_000
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
BOXES = "#playground-output .vision-box"
LINES = "#playground-output .vision-item .vision-text"

# A drop or a paste of `bytes` (base64) named `name`, as the browser delivers one.
DROP_JS = """([selector, kind, b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type }));
  const target = document.querySelector(selector);
  const options = { bubbles: true, cancelable: true };
  target.dispatchEvent(kind === "paste"
    ? new ClipboardEvent("paste", { ...options, clipboardData: data })
    : new DragEvent("drop", { ...options, dataTransfer: data }));
}"""
# Where each box lands on screen, and the image's rectangle and natural size.
GEOMETRY_JS = """() => {
  const img = document.querySelector(".vision-figure img");
  const rect = (el) => {
    const r = el.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom];
  };
  return {
    image: rect(img), natural: [img.naturalWidth, img.naturalHeight],
    boxes: [...document.querySelectorAll(".vision-box rect, .vision-box polygon")].map(rect),
  };
}"""


@pytest.fixture(autouse=True)
def _no_files_left():
    yield
    # The stack shares this process's storage folder: leave no bytes behind.
    files.delete_files(StoredFile.objects.all())


def words(texts: list[str]) -> list[str]:
    return [re.sub(r"\s+", "", text).lower() for text in texts]


def wait_for(page: Page, status: str) -> None:
    expect(page.locator("#playground-status")).to_have_class(
        f"status status-{status}", timeout=RUN_TIMEOUT_MS
    )


def assert_boxes_on_image(page: Page, expected: list[list[float]]) -> None:
    """Each drawn box sits where its pixel box says, at the width the image is shown."""
    shown = page.evaluate(GEOMETRY_JS)
    left, top, right, bottom = shown["image"]
    scale = (right - left) / shown["natural"][0]
    assert abs((bottom - top) / shown["natural"][1] - scale) < 0.01  # not stretched
    assert len(shown["boxes"]) == len(expected)
    for drawn, (x1, y1, x2, y2) in zip(shown["boxes"], expected, strict=True):
        want = [left + x1 * scale, top + y1 * scale, left + x2 * scale, top + y2 * scale]
        assert all(abs(a - b) <= 3 for a, b in zip(drawn, want, strict=True)), (drawn, want)


def bounds(box) -> list[float]:
    """An OCR quadrilateral's bounding rectangle; a detection's box as it is."""
    if isinstance(box[0], list):
        xs, ys = [p[0] for p in box], [p[1] for p in box]
        return [min(xs), min(ys), max(xs), max(ys)]
    return box


def assert_no_overflow(page: Page, width: int) -> None:
    fit = page.evaluate(OVERFLOW_JS, width)
    assert fit["scrollWidth"] <= width, fit


@pytest.mark.timeout(400)
@pytest.mark.parametrize("device", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_ocr_of_an_uploaded_page_draws_its_lines_here_on_its_page_and_when_reopened(
    new_context, live, owner, catalog, tmp_path, device
):
    name = "phone" if device is PHONE else "desktop"
    image = tmp_path / "invoice.png"
    image.write_bytes(encode(text_page()))
    page = new_context(**device).new_page()
    page.add_init_script(RECORD_VIOLATIONS_JS)
    log_in(page, owner.email)
    page.goto(f"/models/{OCR}/")
    expect(page.locator(".drop-zone")).to_contain_text("Drop an image here")
    page.set_input_files("#pg-image", str(image))
    expect(page.locator(".drop-preview")).to_be_visible()
    expect(page.locator(".drop-meta")).to_contain_text("invoice.png · 640 \u00d7 200 px")
    page.click("#playground-run")
    wait_for(page, "succeeded")

    prediction = Prediction.objects.get(model__slug=OCR, status=Status.SUCCEEDED)
    assert prediction.input["image"].startswith("file:")  # sent inline, stored as a file
    expect(page.locator(BOXES)).to_have_count(2)
    assert words(page.locator(LINES).all_text_contents()) == [
        "invoicenumber4217",
        "totaldue:96euros",
    ]
    assert_boxes_on_image(page, [bounds(line["box"]) for line in prediction.output])
    # A line of the list lights its box up, by keyboard as by mouse.
    page.locator("#playground-output .vision-item").nth(1).focus()
    expect(page.locator(BOXES).nth(1)).to_have_class(re.compile(r"\bactive\b"))
    expect(page.locator(BOXES).nth(0)).not_to_have_class(re.compile(r"\bactive\b"))
    assert_no_overflow(page, device["viewport"]["width"])
    assert page.evaluate("window.cspViolations") == []
    screenshot(page, f"vision-ocr-{name}")

    # The API tab: upload the file, then predict with it; no OpenAI SDK for vision.
    page.click("#playground-tab-api")
    expect(page.locator("#playground-code")).to_contain_text("-F file=@image.png")
    expect(page.locator("#playground-languages [role=tab]")).to_have_text(
        ["curl", "Python", "JavaScript"]
    )

    page.click("#playground-tab-output")
    page.click("#playground-link")
    page.wait_for_url(f"**/predictions/{prediction.id}/")
    expect(page.locator("#output-rendered .vision-box")).to_have_count(2)
    assert words(page.locator("#output-rendered .vision-text").all_text_contents()) == words(
        [line["text"] for line in prediction.output]
    )
    assert_boxes_on_image(page, [bounds(line["box"]) for line in prediction.output])
    expect(page.locator("#input-image")).to_have_js_property("naturalWidth", 640)
    assert_no_overflow(page, device["viewport"]["width"])
    assert page.evaluate("window.cspViolations") == []
    screenshot(page, f"vision-ocr-prediction-{name}")

    page.click("#open-in-playground")
    page.wait_for_url(re.compile(rf"/models/{OCR}/\?from={prediction.id}#playground$"))
    expect(page.locator(".drop-preview")).to_be_visible()
    expect(page.locator(".drop-meta")).to_contain_text("640 \u00d7 200 px")
    page.click("#playground-run")
    wait_for(page, "succeeded")
    rerun = Prediction.objects.exclude(pk=prediction.pk).get(model__slug=OCR)
    assert rerun.status == Status.SUCCEEDED and rerun.output == prediction.output
    assert page.evaluate("window.cspViolations") == []


@pytest.mark.timeout(400)
def test_faces_in_a_dropped_and_a_pasted_photo_and_files_refused_in_words(
    page, live, owner, catalog, tmp_path
):
    log_in(page, owner.email)
    page.goto(f"/models/{FACES}/")
    expect(page.locator("#pg-min_score")).to_have_value("0.9")  # the model's own default

    # Refused here, before anything is sent: the reason is under the field.
    gif = tmp_path / "animation.gif"
    gif.write_bytes(b"GIF89a" + b"\x00" * 64)
    page.set_input_files("#pg-image", str(gif))
    error = page.locator(".image-field .field-error")
    expect(error).to_have_text("animation.gif is not a PNG, JPEG or WebP image (it is image/gif).")
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * (10 * 1024 * 1024))
    page.set_input_files("#pg-image", str(big))
    expect(error).to_have_text(
        "This image is 10.0 MiB, over the 10 MiB limit: choose a smaller one."
    )
    page.click("#playground-run")
    expect(error).to_have_text("Choose an image first.")
    assert not Prediction.objects.exists()

    photo = base64.b64encode(encode(astronaut(), "JPEG", quality=90)).decode()
    page.evaluate(DROP_JS, [".drop-zone", "drop", photo, "astronaut.jpg", "image/jpeg"])
    expect(page.locator(".drop-meta")).to_contain_text("astronaut.jpg · 512 \u00d7 512 px")
    expect(error).to_be_hidden()
    page.click("#playground-run")
    wait_for(page, "succeeded")
    first = Prediction.objects.get(status=Status.SUCCEEDED)
    assert first.input["min_score"] == 0.9
    [face] = first.output
    expect(page.locator(BOXES)).to_have_count(1)
    expect(page.locator(BOXES + " text")).to_have_text(re.compile(r"^face \d+\.\d%$"))
    assert_boxes_on_image(page, [face["box"]])
    screenshot(page, "vision-faces")

    # A pasted screenshot replaces the image; a page of text has no face.
    page_png = base64.b64encode(encode(text_page())).decode()
    page.evaluate(DROP_JS, ["body", "paste", page_png, "image.png", "image/png"])
    expect(page.locator(".drop-meta")).to_contain_text("640 \u00d7 200 px")
    page.click("#playground-run")
    expect(page.locator("#playground-output")).to_contain_text(
        "Nothing found at or above the minimum score.", timeout=RUN_TIMEOUT_MS
    )
    second = Prediction.objects.exclude(pk=first.pk).get()
    assert second.output == [] and second.input["image"] != first.input["image"]


def run_shown(command: list[str], token: str, folder) -> str:
    env = {**os.environ, "MODEL_PORTAL_TOKEN": token}
    done = subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.timeout(400)
def test_the_api_tabs_code_uploads_the_image_and_runs_as_shown(
    page, live, owner, catalog, tmp_path
):
    (tmp_path / "image.png").write_bytes(encode(astronaut()))
    log_in(page, owner.email)
    page.goto(f"/models/{FACES}/")
    page.set_input_files("#pg-image", str(tmp_path / "image.png"))
    page.fill("#pg-min_score", "0.8")
    page.click("#playground-run")
    wait_for(page, "succeeded")
    ran = Prediction.objects.get()
    token = services.issue_token(Organization.objects.get(pk=ran.org_id), None, "e2e").plaintext
    page.click("#playground-tab-api")
    expect(page.locator("#playground-api-note")).to_contain_text("The call you just ran")
    code = page.locator("#playground-code")
    tabs = page.locator("#playground-languages [role=tab]")

    result = json.loads(run_shown(["bash", "-c", code.text_content()], token, tmp_path))
    assert result["status"] == "succeeded" and result["output"] == ran.output
    assert result["input"]["min_score"] == 0.8 and result["input"]["image"].startswith("file:")

    tabs.get_by_text("Python", exact=True).click()
    printed = run_shown([sys.executable, "-c", code.text_content()], token, tmp_path)
    assert printed.strip() == f"succeeded {ran.output}"  # Python's repr of the same list

    tabs.get_by_text("JavaScript", exact=True).click()
    (tmp_path / "snippet.mjs").write_text(code.text_content())
    printed = run_shown(["node", "snippet.mjs"], token, tmp_path)
    status, output = printed.split(" ", 1)
    assert status == "succeeded" and json.loads(output) == ran.output
