"""What the model page's playground starts from: its mode, the input that fills its form
(the listing's example, or the input of one of the viewer's predictions), and the values
its sliders show for parameters the input leaves out.

`?from=<prediction id>` ("Open in playground" on a prediction's page) fills the form with
that prediction's input, for a prediction of the viewer's current org on this model only.
Any other id (another org's, a missing one, one of another model, one whose data is erased)
gives the plain playground, the same page byte for byte, so that nobody learns whether an
id exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.images import image_fields
from inference.models import Prediction
from models_hub.models import ModelListing, Task
from portal.errors import NotFound
from portal.models import Organization
from portal.scoping import get_for_org

# What the text-generation runner uses for a parameter that neither the input nor the
# listing's default_params sets (inference/runners/text_generation.py, generation_params):
# the sliders show these, so that what they show is what runs.
RUNNER_DEFAULTS: dict[str, Any] = {"max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0}
# Longer than any prediction id; a longer value is not looked up at all.
MAX_ID_LENGTH = 64


@dataclass(frozen=True)
class Playground:
    mode: str  # "chat" (a message thread) or "form" (one run of the schema's fields)
    input: dict[str, Any]  # what fills the form
    defaults: dict[str, Any]  # slider values for parameters `input` leaves out
    from_prediction: str | None  # the id whose input fills the form, if one does


def mode_for(listing: ModelListing) -> str:
    """Chat for text generation whose schema takes `messages`; a plain form otherwise."""
    properties = listing.input_schema.get("properties", {})
    if listing.task == Task.TEXT_GENERATION and "messages" in properties:
        return "chat"
    return "form"


def prefill_input(
    org: Organization | None, listing: ModelListing, prediction_id: str | None
) -> dict[str, Any] | None:
    """The input of the org's prediction `prediction_id` on `listing`, or None (see the
    module's docstring for every case that is None)."""
    if not prediction_id or org is None or len(prediction_id) > MAX_ID_LENGTH:
        return None
    try:
        prediction = get_for_org(
            Prediction.objects.only("input", "model_id", "data_removed_at"), org, pk=prediction_id
        )
    except NotFound:
        return None
    usable = (
        prediction.model_id == listing.pk
        and prediction.data_removed_at is None
        and isinstance(prediction.input, dict)
        and prediction.input
    )
    return prediction.input if usable else None


def starting_input(listing: ModelListing) -> dict[str, Any]:
    """The example without its image: a vision listing's example image only has to be
    valid (a blank pixel), so the playground starts empty and asks for one instead."""
    images = image_fields(listing.task)
    return {key: value for key, value in listing.example_input.items() if key not in images}


def defaults_for(listing: ModelListing) -> dict[str, Any]:
    if listing.task == Task.TEXT_GENERATION:
        return {**RUNNER_DEFAULTS, **listing.default_params}
    if image_fields(listing.task):
        # The runner's own defaults (MTCNN's min_score of 0.9): the slider shows them.
        return dict(listing.default_params)
    return {}


def playground_for(
    org: Organization | None, listing: ModelListing, from_prediction: str | None = None
) -> Playground:
    prefill = prefill_input(org, listing, from_prediction)
    defaults = defaults_for(listing)
    return Playground(
        mode=mode_for(listing),
        input=prefill if prefill is not None else starting_input(listing),
        defaults=defaults,
        from_prediction=from_prediction if prefill is not None else None,
    )
