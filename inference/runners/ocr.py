"""OCR with RapidOCR (PP-OCRv4 detection and recognition on onnxruntime).

Input: `{"image": bytes}`, the clean bytes `inference.files.input_images` read (never
anything the web tier did not validate). Output (API.md): `[{"text", "score", "box"}]`,
each box four [x, y] corners clockwise from top-left, in pixels of the image as
displayed, in reading order (top to bottom, then left to right within a line).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from inference.images import open_stored
from inference.locations import local_path
from inference.runners.base import CancelCheck, Event, Metrics, Result, never_cancel
from inference.spec import ModelSpec

DETECTOR = "ch_PP-OCRv4_det_infer.onnx"
RECOGNIZER = "ch_PP-OCRv4_rec_infer.onnx"
ORIENTATION = "ch_ppocr_mobile_v2.0_cls_infer.onnx"


def reading_order(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Top to bottom; boxes whose tops are within half a line's height of each other are
    one line, read left to right."""
    rows: list[list[dict[str, Any]]] = []
    for line in sorted(lines, key=lambda item: item["box"][0][1]):
        top = line["box"][0][1]
        height = max(1.0, line["box"][3][1] - top)
        if rows and abs(rows[-1][0]["box"][0][1] - top) < height / 2:
            rows[-1].append(line)
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda item: item["box"][0][0])]


@cache
def _engine(folder: str) -> Any:
    """One engine per process and model folder, made on first use in the process that
    runs it (onnxruntime's thread pools do not survive a fork)."""
    from rapidocr_onnxruntime import RapidOCR

    models = Path(folder)
    return RapidOCR(
        det_model_path=str(models / DETECTOR),
        rec_model_path=str(models / RECOGNIZER),
        cls_model_path=str(models / ORIENTATION),
    )


class OcrRunner:
    task = "ocr"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def engine(self, spec: ModelSpec) -> Any:
        with self._lock:
            return _engine(str(local_path(spec.parsed_source)))

    def run(
        self, spec: ModelSpec, data: dict[str, Any], should_cancel: CancelCheck = never_cancel
    ) -> Iterator[Event]:
        engine = self.engine(spec)
        started = time.perf_counter()
        pixels = np.asarray(open_stored(data["image"]))[:, :, ::-1]  # RapidOCR reads BGR
        found, _ = engine(pixels)
        lines = [
            {
                "text": text,
                "score": round(float(score), 4),
                "box": [[round(float(x), 1), round(float(y), 1)] for x, y in box],
            }
            for box, text, score in found or []
        ]
        output = reading_order(lines)
        yield Event.result(Result(output, Metrics(0, 0, time.perf_counter() - started)))
