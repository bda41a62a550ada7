"""The vision runners on the real offline models (RapidOCR's PP-OCRv4, MTCNN), fed what
the worker feeds them: the clean bytes `inference.images` stored. And the torchvision
stand-in the detector imports, against reference implementations."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from inference.images import clean_image
from inference.runners.base import EventType
from inference.runners.face_detection import FaceDetectionRunner
from inference.runners.ocr import OcrRunner, reading_order
from inference.runners.torchvision_standin import batched_nms, nms, to_tensor
from inference.spec import ModelSpec
from models_hub.demo import MTCNN_SOURCE, OCR_SOURCE
from tests.inference.vision_images import astronaut, encode, stored_sideways, text_page

OCR = ModelSpec(source=OCR_SOURCE, task="ocr")
FACES = ModelSpec(source=MTCNN_SOURCE, task="object-detection")
# Where the face is in skimage's astronaut photo (512x512), as a person would draw it.
FACE_REGION = (170, 50, 280, 185)


def run(runner, spec: ModelSpec, data: dict):
    events = list(runner.run(spec, data))
    assert [event.type for event in events] == [EventType.RESULT]
    return events[0].data.output


def clean(raw: bytes) -> bytes:
    return clean_image(raw, "input.image").data


def test_ocr_reads_the_words_in_reading_order_with_boxes():
    lines = run(OcrRunner(), OCR, {"image": clean(encode(text_page()))})
    texts = [line["text"].replace(" ", "").lower() for line in lines]
    assert texts == ["invoicenumber4217", "totaldue:96euros"]
    first, second = lines
    assert all(0.8 < line["score"] <= 1 for line in lines)
    # Four corners each, inside the 640x200 page; the first line above the second.
    assert len(first["box"]) == 4 and all(0 <= x <= 640 and 0 <= y <= 200 for x, y in first["box"])
    assert first["box"][2][1] < second["box"][0][1]


def test_ocr_reads_dark_text_on_a_transparent_background():
    page = text_page().convert("L")
    # Black text, everything else fully transparent: alpha is where the ink is.
    ink = Image.new("RGBA", page.size, (0, 0, 0, 0))
    ink.putalpha(page.point(lambda value: 255 - value))
    lines = run(OcrRunner(), OCR, {"image": clean(encode(ink))})
    texts = [line["text"].replace(" ", "").lower() for line in lines]
    assert texts == ["invoicenumber4217", "totaldue:96euros"]


def test_reading_order_is_top_to_bottom_then_left_to_right():
    def line(text, x, y):
        return {"text": text, "box": [[x, y], [x + 50, y], [x + 50, y + 20], [x, y + 20]]}

    shuffled = [line("d", 10, 60), line("b", 100, 12), line("a", 10, 10), line("c", 200, 8)]
    assert [item["text"] for item in reading_order(shuffled)] == ["a", "b", "c", "d"]


def test_the_detector_finds_the_one_face_in_the_astronaut_photo():
    [face] = run(FaceDetectionRunner(), FACES, {"image": clean(encode(astronaut()))})
    assert face["label"] == "face" and face["score"] >= 0.9
    x1, y1, x2, y2 = face["box"]
    left, top, right, bottom = FACE_REGION
    assert left <= x1 < x2 <= right and top <= y1 < y2 <= bottom
    assert x2 - x1 > 60 and y2 - y1 > 80


def test_boxes_are_in_the_displayed_orientation_of_an_exif_rotated_photo():
    photo = astronaut()
    displayed = run(FaceDetectionRunner(), FACES, {"image": clean(encode(photo, "JPEG"))})
    rotated = run(FaceDetectionRunner(), FACES, {"image": clean(stored_sideways(photo))})
    [upright], [turned] = displayed, rotated
    # The same face in the same place (JPEG round trips move it by a pixel or two).
    assert np.allclose(upright["box"], turned["box"], atol=6)


def test_min_score_filters_and_the_default_is_09():
    image = clean(encode(Image.new("RGB", (200, 200), "gray")))
    assert run(FaceDetectionRunner(), FACES, {"image": image}) == []
    photo = clean(encode(astronaut()))
    assert run(FaceDetectionRunner(), FACES, {"image": photo, "min_score": 1.01}) == []


# --- The torchvision stand-in ---------------------------------------------------------------


def iou(a, b) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def brute_force_batched_nms(boxes, scores, idxs, threshold) -> list[int]:
    """Greedy NMS the textbook way: best first, keep a box unless a kept box of its own
    category overlaps it by more than the threshold."""
    kept: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(idxs[i] != idxs[k] or iou(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", range(20))
def test_batched_nms_matches_a_brute_force_implementation(seed):
    generator = torch.Generator().manual_seed(seed)
    corners = torch.rand(60, 2, generator=generator) * 100
    sizes = torch.rand(60, 2, generator=generator) * 40 + 1
    boxes = torch.cat([corners, corners + sizes], dim=1)
    scores = torch.rand(60, generator=generator)
    idxs = torch.randint(0, 3, (60,), generator=generator)
    for threshold in (0.3, 0.5, 0.7):
        expected = brute_force_batched_nms(
            boxes.tolist(), scores.tolist(), idxs.tolist(), threshold
        )
        assert batched_nms(boxes, scores, idxs, threshold).tolist() == expected
    assert nms(boxes, scores, 0.5).tolist() == brute_force_batched_nms(
        boxes.tolist(), scores.tolist(), [0] * 60, 0.5
    )


def test_batched_nms_of_nothing_is_empty():
    empty = torch.empty((0, 4))
    assert batched_nms(empty, torch.empty(0), torch.empty(0), 0.5).tolist() == []


def test_to_tensor_is_chw_and_scales_only_bytes():
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    tensor = to_tensor(pixels)
    assert tensor.shape == (3, 2, 3) and tensor.dtype == torch.float32
    for c, y, x in itertools.product(range(3), range(2), range(3)):
        assert tensor[c, y, x].item() == pytest.approx(pixels[y, x, c] / 255)
    floats = np.float32(pixels)
    assert torch.equal(to_tensor(floats), torch.from_numpy(floats.transpose(2, 0, 1)))
    assert to_tensor(Image.fromarray(pixels[:, :, 0])).shape == (1, 2, 3)


def test_transformers_sees_no_torchvision_once_the_detector_is_loaded():
    """In a fresh process, as in a worker: the detector loads, then transformers looks."""
    script = (
        "import sys\n"
        "from inference.runners import runners\n"
        "runners()\n"
        "from transformers.utils import is_torchvision_available\n"
        "assert 'facenet_pytorch.models.mtcnn' in sys.modules\n"
        "assert not any(name.startswith('torchvision') for name in sys.modules)\n"
        "print(is_torchvision_available())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stdout.strip() == "False"
