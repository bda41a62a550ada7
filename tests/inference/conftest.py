"""Runtime fixtures: the demo models' specs, each real model loaded once per session;
the demo catalog and a CPU worker's presence for the files and vision tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inference import presence
from inference.loading import Arch, LoadedModel, get_model
from inference.runners.transformers_backend import TransformersBackend
from inference.spec import ModelSpec
from models_hub.demo import load_demo_catalog
from models_hub.models import ModelListing
from tests.inference.helpers import demo_spec

CPU_WORKER = "inference-tests-cpu-worker"


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


# The batching tests (static and continuous) compare batched streams with `single`, the
# same model run one request at a time (per module, as each test module loaded it).
@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    # float32: batched and single matmuls agree closely enough for greedy tokens to match.
    return demo_spec("smollm2-135m-instruct", dtype="float32")


@pytest.fixture(scope="module")
def loaded(spec) -> LoadedModel:
    return get_model(spec, Arch.CAUSAL_LM)


@pytest.fixture(scope="module")
def single(spec, loaded) -> TransformersBackend:
    return TransformersBackend(spec, loaded)


@pytest.fixture
def catalog(db) -> dict[str, ModelListing]:
    """The demo catalog, by slug."""
    return {listing.slug: listing for listing in load_demo_catalog()}


@pytest.fixture
def worker_present(catalog) -> Iterator[None]:
    """A CPU worker announced present, so that admission queues instead of refusing."""
    presence.announce(CPU_WORKER, ["cpu"])
    yield
    presence.withdraw(CPU_WORKER, ["cpu"])
