"""Face detection with MTCNN (facenet_pytorch; its three small networks' weights ship in
the wheel). Only MTCNN: the package's InceptionResnetV1 downloads weights and is never
used.

Input: `{"image": bytes, "min_score": float?}`, the clean bytes of an upright image.
Output (API.md, `object-detection`): `[{"label": "face", "score", "box": [x1, y1, x2,
y2]}]`, best first, boxes in pixels clipped to the image.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import torch

from inference.images import open_stored
from inference.locations import local_path
from inference.runners.base import CancelCheck, Event, Metrics, Result, never_cancel
from inference.runners.torchvision_standin import facenet_modules
from inference.spec import ModelSpec

with facenet_modules():
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
    from facenet_pytorch.models.utils.detect_face import detect_face

DEFAULT_MIN_SCORE = 0.9
LABEL = "face"
# MTCNN's defaults (facenet_pytorch.MTCNN): the smallest face in pixels, the three
# stages' thresholds and the image pyramid's scale step.
MIN_FACE_SIZE = 20
THRESHOLDS = (0.6, 0.7, 0.7)
SCALE_FACTOR = 0.709
WEIGHT_FILES = {"pnet": "pnet.pt", "rnet": "rnet.pt", "onet": "onet.pt"}


class Networks:
    """The three MTCNN stages with weights from the listing's source folder."""

    def __init__(self, folder: Path):
        self.pnet, self.rnet, self.onet = (
            PNet(pretrained=False),
            RNet(pretrained=False),
            ONet(pretrained=False),
        )
        for name, net in (("pnet", self.pnet), ("rnet", self.rnet), ("onet", self.onet)):
            net.load_state_dict(torch.load(folder / WEIGHT_FILES[name], weights_only=True))
            net.eval()


@cache
def _networks(folder: str) -> Networks:
    return Networks(Path(folder))


def faces(networks: Networks, image: Any, min_score: float) -> list[dict[str, Any]]:
    """Faces found in a PIL RGB image, best first."""
    with torch.inference_mode():
        boxes, _ = detect_face(
            image,
            MIN_FACE_SIZE,
            networks.pnet,
            networks.rnet,
            networks.onet,
            list(THRESHOLDS),
            SCALE_FACTOR,
            torch.device("cpu"),
        )
    width, height = image.size
    found = []
    for x1, y1, x2, y2, score in boxes[0] if len(boxes) else []:
        if score < min_score:
            continue
        box = [
            round(float(min(max(x1, 0), width)), 1),
            round(float(min(max(y1, 0), height)), 1),
            round(float(min(max(x2, 0), width)), 1),
            round(float(min(max(y2, 0), height)), 1),
        ]
        found.append({"label": LABEL, "score": round(float(score), 4), "box": box})
    return sorted(found, key=lambda face: face["score"], reverse=True)


class FaceDetectionRunner:
    task = "object-detection"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def networks(self, spec: ModelSpec) -> Networks:
        with self._lock:
            return _networks(str(local_path(spec.parsed_source)))

    def run(
        self, spec: ModelSpec, data: dict[str, Any], should_cancel: CancelCheck = never_cancel
    ) -> Iterator[Event]:
        networks = self.networks(spec)
        started = time.perf_counter()
        default = spec.default_params.get("min_score", DEFAULT_MIN_SCORE)
        min_score = float(data.get("min_score", default))
        output = faces(networks, open_stored(data["image"]), min_score)
        yield Event.result(Result(output, Metrics(0, 0, time.perf_counter() - started)))
