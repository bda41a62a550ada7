"""Billed = delivered (issue #12), in the worker's real loop (`execution._run`) with the
echo model: the tokens counted are those whose output reached the prediction's event log
before the cancel took effect; what the runner emits after it (a stop-string prefix it
had held back) is logged for the client but not counted."""

from __future__ import annotations

import pytest

from inference import events, execution
from inference.models import Prediction
from models_hub.demo import load_demo_catalog
from models_hub.models import ModelListing

pytestmark = pytest.mark.django_db


def cancel_after(checks: int):
    """A cancel flag that is seen set at the runner's `checks`-th look."""
    seen = [0]

    def requested() -> bool:
        seen[0] += 1
        return seen[0] >= checks

    return requested


def prediction_for(org, prompt: str, **params) -> Prediction:
    load_demo_catalog()
    echo = ModelListing.objects.get(slug="echo")
    data = {"prompt": prompt, "max_new_tokens": 50, "tokens_per_second": 0, **params}
    return Prediction.objects.create(org=org, model=echo, input=data)


def logged_output(prediction: Prediction) -> str:
    return "".join(e.data for e in events.read_after(prediction.id, 0) if e.type == "output")


def test_a_cancel_stops_the_count_at_what_was_delivered(org):
    prediction = prediction_for(org, "a b c d e f g h")
    delivery = execution.Delivery(cancel_after(3))
    result, _ = execution._run(prediction, delivery)
    assert result.metrics.output_tokens == 3
    assert delivery.tokens == 3 and logged_output(prediction) == "a b c"


def test_a_held_back_tail_sent_after_the_cancel_is_not_billed(org):
    # "d" and " e" are held as the start of the stop string "d e X" (the space before "d"
    # goes out with token " d", which counts as delivered); the cancel comes while " e"
    # is held, and the flush after it sends "d e": generated 5, delivered 4.
    prediction = prediction_for(org, "a b c d e f g h", stop=["d e X"])
    delivery = execution.Delivery(cancel_after(5))
    result, _ = execution._run(prediction, delivery)
    assert result.metrics.output_tokens == 5
    assert logged_output(prediction) == "a b c d e"
    assert delivery.tokens == 4


def test_without_a_cancel_every_token_counts(org):
    prediction = prediction_for(org, "a b c d")
    delivery = execution.Delivery(lambda: False)
    result, _ = execution._run(prediction, delivery)
    assert delivery.tokens == result.metrics.output_tokens == 4
    assert not delivery.canceled
