"""Fixtures for the abuse-limit and sweep tests."""

from __future__ import annotations

import pytest

from models_hub.models import ListingStatus, ModelListing, Task, Visibility
from models_hub.schemas import text_generation_schema

# A listing whose own cap (16) is below what its schema allows (1024): the cap must win.
ECHO_CAP = 16


@pytest.fixture
def echo_listing(db) -> ModelListing:
    listing = ModelListing(
        slug="sec-echo",
        name="Security echo",
        summary="Echo listing for the abuse-limit tests.",
        task=Task.TEXT_GENERATION,
        source="builtin:echo",
        status=ListingStatus.PUBLISHED,
        visibility=Visibility.PUBLIC,
        max_context=4096,
        max_params={"max_new_tokens": ECHO_CAP},
        input_schema=text_generation_schema(max_new_tokens=1024),
        example_input={"prompt": "hello"},
        options={"tokens_per_second": 0},
    )
    listing.full_clean()
    listing.save()
    return listing
