"""Runners by task: `get_runner(task).run(spec, input, should_cancel)` yields events."""

from __future__ import annotations

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
from inference.runners.classification import ClassificationRunner
from inference.runners.embeddings import EmbeddingsRunner
from inference.runners.text_generation import TextGenerationRunner

# A new task is a runner module here plus a `models_hub.models.Task` choice.
RUNNERS: dict[str, Runner] = {
    runner.task: runner
    for runner in (TextGenerationRunner(), EmbeddingsRunner(), ClassificationRunner())
}


def get_runner(task: str) -> Runner:
    try:
        return RUNNERS[task]
    except KeyError:
        raise LookupError(f"No runner for task {task!r}.") from None


__all__ = [
    "RUNNERS",
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
