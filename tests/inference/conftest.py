"""Runtime fixtures: the demo models' specs, each real model loaded once per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from inference.loading import Arch, LoadedModel, get_model
from inference.runners import Event, EventType, Result
from inference.spec import ModelSpec
from models_hub.demo import DEMO_LISTINGS
from models_hub.models import ModelListing


def demo_spec(slug: str, **changes: Any) -> ModelSpec:
    entry = next(item for item in DEMO_LISTINGS if item["slug"] == slug)
    fields = {key: value for key, value in entry.items() if key != "tags"}
    fields.update(changes)
    return ModelListing(**fields).runtime_spec


def collect(events: Iterator[Event]) -> tuple[list[Event], Result]:
    """All events, and the final result (which must come last, exactly once)."""
    events = list(events)
    results = [event for event in events if event.type == EventType.RESULT]
    assert len(results) == 1 and events[-1] is results[0]
    return events, results[0].data


def outputs(events: list[Event]) -> list[str]:
    return [event.data for event in events if event.type == EventType.OUTPUT]


@pytest.fixture(scope="session")
def smollm2_spec() -> ModelSpec:
    return demo_spec("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def smollm2(smollm2_spec) -> LoadedModel:
    return get_model(smollm2_spec, Arch.CAUSAL_LM)


@pytest.fixture(scope="session")
def minilm_spec() -> ModelSpec:
    return demo_spec("all-minilm-l6-v2")


@pytest.fixture(scope="session")
def classifier_spec() -> ModelSpec:
    return demo_spec("minilm-zero-shot-classifier")


@pytest.fixture(scope="session")
def minilm(minilm_spec) -> LoadedModel:
    return get_model(minilm_spec, Arch.ENCODER)
