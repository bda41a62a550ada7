"""Every schema violation is refused before queueing, with a message naming the field."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from models_hub.demo import load_demo_catalog
from models_hub.models import ModelListing
from models_hub.schemas import MAX_EMBEDDING_BATCH
from models_hub.validation import validate_input
from portal.errors import InvalidInput

CHAT = [{"role": "user", "content": "hi"}]


@pytest.fixture
def echo(make_listing) -> ModelListing:
    """Context 64 word-pieces, max_new_tokens capped at 32 (schema and listing)."""
    return make_listing("tiny-echo")


@pytest.fixture
def demo(db) -> dict[str, ModelListing]:
    return {listing.slug: listing for listing in load_demo_catalog()}


def rejected(listing: ModelListing, data) -> InvalidInput:
    with pytest.raises(InvalidInput) as excinfo:
        validate_input(listing, data)
    error = excinfo.value
    assert error.status == 400
    assert error.param
    assert error.param in error.message, error.message
    return error


def test_valid_input_is_returned_as_a_copy(echo):
    data = {"prompt": "hello", "max_new_tokens": 4, "stop": ["x"], "seed": 3}
    validated = validate_input(echo, data)
    assert validated == data
    assert validated is not data


@pytest.mark.parametrize(
    ("data", "param", "words"),
    [
        ({}, "input.prompt", "required"),
        ({"prompt": ""}, "input.prompt", "empty"),
        ({"prompt": "   \n"}, "input.prompt", "empty"),
        ({"prompt": 5}, "input.prompt", "string"),
        ({"prompt": None}, "input.prompt", "string"),
        ({"prompt": "hi", "messages": CHAT}, "input.messages", "not both"),
        ({"messages": []}, "input.messages", "at least 1"),
        ({"messages": "hi"}, "input.messages", "list"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "input.messages[0].role", "one of"),
        ({"messages": [{"role": "user"}]}, "input.messages[0].content", "required"),
        ({"messages": [{"role": "user", "content": " "}]}, "input.messages", "text"),
        ({"prompt": "hi", "max_new_tokens": "10"}, "input.max_new_tokens", "integer"),
        ({"prompt": "hi", "max_new_tokens": 2.5}, "input.max_new_tokens", "integer"),
        ({"prompt": "hi", "max_new_tokens": True}, "input.max_new_tokens", "integer"),
        ({"prompt": "hi", "max_new_tokens": 0}, "input.max_new_tokens", "at least 1"),
        ({"prompt": "hi", "max_new_tokens": 33}, "input.max_new_tokens", "at most 32"),
        ({"prompt": "hi", "temperature": -0.1}, "input.temperature", "at least 0"),
        ({"prompt": "hi", "temperature": "hot"}, "input.temperature", "number"),
        ({"prompt": "hi", "top_p": 0}, "input.top_p", "greater than 0"),
        ({"prompt": "hi", "top_p": 1.5}, "input.top_p", "at most 1"),
        ({"prompt": "hi", "stop": "."}, "input.stop", "list"),
        ({"prompt": "hi", "stop": [1]}, "input.stop[0]", "string"),
        ({"prompt": "hi", "stop": [""]}, "input.stop[0]", "empty"),
        ({"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, "input.stop", "at most 4"),
        ({"prompt": "hi", "seed": -1}, "input.seed", "at least 0"),
        ({"prompt": "hi", "seed": "lucky"}, "input.seed", "integer"),
        ({"prompt": "hi", "temprature": 1}, "input.temprature", "not a field"),
    ],
)  # fmt: skip
def test_text_generation_violations(echo, data, param, words):
    error = rejected(echo, data)
    assert error.param == param
    assert words in error.message


def deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("data", "param", "words"),
    [
        ({"prompt": "hi", "temperature": float("nan")}, "input.temperature", "finite"),
        ({"prompt": "hi", "top_p": float("inf")}, "input.top_p", "finite"),
        ({"prompt": "hi", "seed": float("-inf")}, "input.seed", "finite"),
        ({"prompt": "a\ud800b"}, "input.prompt", "surrogate"),
        ({"messages": [{"role": "user", "content": "\udc00"}]}, "input.messages[0].content",
         "surrogate"),
        ({"prompt": "a\x00b"}, "input.prompt", "NUL"),
        ({"prompt": "hi", "\ud800": 1}, "input", "surrogate"),
        ({"prompt": "hi", "stop": deep(100_000)}, "input.stop", "nested"),
    ],
)  # fmt: skip
def test_values_json_cannot_carry_are_refused(echo, data, param, words):
    """What a caller other than the JSON parsers (a WebSocket frame, Python code) could hand
    in: the schema's range checks pass NaN (every comparison with it is false)."""
    error = rejected(echo, data)
    assert error.param.startswith(param)
    assert words in error.message


def test_input_must_be_an_object(echo):
    for data in (["prompt"], "prompt", None, 3):
        assert rejected(echo, data).param == "input"


def test_messages_are_not_echoed_back_in_errors(echo):
    secret = "my-secret-" + "x" * 50
    error = rejected(echo, {"prompt": "hi", "stop": secret})
    assert secret not in error.message


def test_listing_cap_applies_even_when_schema_has_none(make_listing):
    listing = make_listing(
        "uncapped-schema",
        input_schema={"type": "object", "properties": {"prompt": {"type": "string"},
                      "max_new_tokens": {"type": "integer"}}},
        max_params={"max_new_tokens": 16},
    )  # fmt: skip
    error = rejected(listing, {"prompt": "hi", "max_new_tokens": 17})
    assert error.param == "input.max_new_tokens"
    assert "maximum of 16" in error.message


def test_too_long_prompt_for_the_context(echo):
    error = rejected(echo, {"prompt": "word " * 64})
    assert error.param == "input.prompt"
    assert "64 tokens" in error.message
    rejected_chat = rejected(echo, {"messages": [{"role": "user", "content": "word " * 80}]})
    assert rejected_chat.param == "input.messages"


def test_max_new_tokens_beyond_the_remaining_context(echo):
    prompt = " ".join(["word"] * 40)  # 40 echo tokens
    error = rejected(echo, {"prompt": prompt, "max_new_tokens": 30})
    assert error.param == "input.max_new_tokens"
    assert "at most 24 new tokens" in error.message
    assert validate_input(echo, {"prompt": prompt, "max_new_tokens": 24})


@pytest.mark.parametrize(
    ("data", "param", "words"),
    [
        ({}, "input.input", "required"),
        ({"input": ""}, "input.input", "empty"),
        ({"input": " "}, "input.input", "empty"),
        ({"input": []}, "input.input", "at least 1 item"),
        ({"input": ["ok", ""]}, "input.input[1]", "empty"),
        ({"input": 5}, "input.input", "accepted forms"),
        ({"input": ["ok"] * (MAX_EMBEDDING_BATCH + 1)}, "input.input", "at most 128 items"),
        ({"input": "ok", "dimensions": 3}, "input.dimensions", "not a field"),
    ],
)
def test_embeddings_violations(demo, data, param, words):
    error = rejected(demo["all-minilm-l6-v2"], data)
    assert error.param == param
    assert words in error.message


def test_embeddings_text_longer_than_the_model_reads(demo):
    error = rejected(demo["all-minilm-l6-v2"], {"input": ["short", "word " * 300]})
    assert error.param == "input.input[1]"
    assert "at most 256" in error.message


@pytest.mark.parametrize(
    ("data", "param", "words"),
    [
        ({}, "input.text", "required"),
        ({"text": ""}, "input.text", "empty"),
        ({"text": "  "}, "input.text", "empty"),
        ({"text": "hi", "labels": []}, "input.labels", "at least 1"),
        ({"text": "hi", "labels": ["a", "a"]}, "input.labels", "repeat"),
        ({"text": "hi", "labels": ["a", ""]}, "input.labels[1]", "empty"),
        ({"text": "hi", "labels": ["a", " "]}, "input.labels", "empty label"),
        ({"text": "hi", "labels": "a"}, "input.labels", "list"),
        ({"text": "word " * 300}, "input.text", "at most 256"),
    ],
)
def test_classification_violations(demo, data, param, words):
    error = rejected(demo["minilm-zero-shot-classifier"], data)
    assert error.param == param
    assert words in error.message


@pytest.mark.models
def test_too_long_prompt_for_a_real_model_counts_tokenizer_tokens(demo):
    listing = demo["smollm2-135m-instruct"]
    # Its GGUF file converted, as `prepare_models` does at deploy: until then the web has
    # no tokenizer.json to count with and the worker refuses instead (test_tokenizing.py).
    call_command("prepare_models")
    error = rejected(listing, {"prompt": "hello " * 2100})
    assert error.param == "input.prompt"
    assert "2048 tokens" in error.message
    assert validate_input(listing, {"prompt": "hello " * 100, "max_new_tokens": 64})


def test_demo_examples_are_valid(demo):
    for slug in ("echo", "all-minilm-l6-v2", "minilm-zero-shot-classifier"):
        listing = demo[slug]
        assert validate_input(listing, listing.example_input) == listing.example_input
