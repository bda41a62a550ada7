"""Helpers shared by the runtime tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
