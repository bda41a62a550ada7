"""Runners by task: `get_runner(task).run(spec, input, should_cancel)` yields events.

The runners import torch, so they are imported on the first `get_runner`, in a worker:
the web process imports this package (the event types, the echo model's tokens) and must
stay without torch.
"""

from __future__ import annotations

from functools import cache

from inference.runners.base import (
    CancelCheck,
    Event,
    EventType,
    FinishReason,
    Metrics,
    Result,
    Runner,
    never_cancel,
)


@cache
def runners() -> dict[str, Runner]:
    """A new task is a runner module here plus a `models_hub.models.Task` choice."""
    from inference.runners.classification import ClassificationRunner
    from inference.runners.embeddings import EmbeddingsRunner
    from inference.runners.face_detection import FaceDetectionRunner
    from inference.runners.ocr import OcrRunner
    from inference.runners.text_generation import TextGenerationRunner

    all_runners: tuple[Runner, ...] = (
        TextGenerationRunner(),
        EmbeddingsRunner(),
        ClassificationRunner(),
        OcrRunner(),
        FaceDetectionRunner(),
    )
    return {runner.task: runner for runner in all_runners}


def get_runner(task: str) -> Runner:
    try:
        return runners()[task]
    except KeyError:
        raise LookupError(f"No runner for task {task!r}.") from None


__all__ = [
    "CancelCheck",
    "Event",
    "EventType",
    "FinishReason",
    "Metrics",
    "Result",
    "Runner",
    "get_runner",
    "never_cancel",
]
