"""Catalog fixtures: listings built through the model with sensible defaults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from models_hub.models import ListingStatus, ModelListing, Task, Visibility
from models_hub.schemas import text_generation_schema
from models_hub.services import tag_objects


@pytest.fixture
def make_listing(db) -> Callable[..., ModelListing]:
    """A published, public, operator-owned echo listing unless told otherwise."""

    def make(slug: str, *, tags: list[str] | None = None, **fields: Any) -> ModelListing:
        values: dict[str, Any] = {
            "name": slug.replace("-", " ").title(),
            "summary": f"Summary of {slug}",
            "task": Task.TEXT_GENERATION,
            "source": "builtin:echo",
            "status": ListingStatus.PUBLISHED,
            "visibility": Visibility.PUBLIC,
            "max_context": 64,
            "max_params": {"max_new_tokens": 32},
            "input_schema": text_generation_schema(max_new_tokens=32),
            "example_input": {"prompt": "hello"},
            "options": {"tokens_per_second": 0},
        }
        values.update(fields)
        listing = ModelListing(slug=slug, **values)
        listing.full_clean()
        listing.save()
        if tags:
            listing.tags.set(tag_objects(tags))
        return listing

    return make


@pytest.fixture
def private_listing(make_listing, org) -> ModelListing:
    return make_listing(
        "acme-secret-model",
        org=org,
        visibility=Visibility.PRIVATE,
        summary="Acme's internal model",
    )
