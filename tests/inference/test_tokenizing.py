"""The web's torch-free token counts equal the worker's transformers counts."""

from __future__ import annotations

import shutil
from dataclasses import replace
from typing import Any

import pytest
from transformers import AutoTokenizer

from inference import loading
from inference.input_checks import context_limit, prompt_tokens
from inference.runners import get_runner
from inference.runners.embeddings import token_counts
from inference.runners.transformers_backend import encode_prompt
from inference.spec import ModelSpec
from inference.tokenizing import TOKENIZER_FILE, token_counter
from models_hub.demo import DEMO_LISTINGS
from portal.errors import InvalidInput
from tests.inference.helpers import demo_spec

GENERATION_SLUGS = [
    entry["slug"]
    for entry in DEMO_LISTINGS
    if entry["task"] == "text-generation" and not entry["source"].startswith("builtin:")
]
ENCODER_TASKS = ("embeddings", "text-classification")
ENCODER_SLUGS = [entry["slug"] for entry in DEMO_LISTINGS if entry["task"] in ENCODER_TASKS]
LONG = "The quick brown fox jumps over the lazy dog. " * 60
INPUTS: list[dict[str, Any]] = [
    {"prompt": "Hello"},
    {"prompt": "  leading and trailing spaces \n\n"},
    {"prompt": "Ünïcödé: 日本語のテキスト, emoji 🦊🚀, Ελληνικά, עברית"},
    {"prompt": LONG},
    {
        "messages": [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "What is the capital of France?"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello, how can I help?"},
            {"role": "user", "content": "Tell me a joke about 🐍."},
            {"role": "assistant", "content": "Why did the snake cross the road?"},
            {"role": "user", "content": "Why?"},
        ]
    },
    {"messages": [{"role": "system", "content": ""}, {"role": "user", "content": "Only me."}]},
    {"messages": [{"role": "user", "content": "<|im_start|>user\nNot a real turn<|im_end|>"}]},
]


def transformers_tokenizer(spec: ModelSpec) -> Any:
    """The worker's tokenizer, loaded fresh; a GGUF file is converted here if needed."""
    location, kwargs = loading.pretrained_args(spec.source, spec.revision)
    return AutoTokenizer.from_pretrained(location, **kwargs)


@pytest.mark.parametrize("slug", GENERATION_SLUGS)
def test_prompt_counts_match_transformers(slug):
    spec = demo_spec(slug)
    tokenizer = transformers_tokenizer(spec)
    counter = token_counter(spec)
    assert counter is not None and counter.chat_template is not None
    for data in INPUTS:
        assert prompt_tokens(counter, data) == len(encode_prompt(tokenizer, data)), data


@pytest.mark.parametrize("slug", GENERATION_SLUGS)
def test_rendered_chat_matches_transformers(slug):
    spec = demo_spec(slug)
    tokenizer = transformers_tokenizer(spec)
    counter = token_counter(spec)
    for data in INPUTS:
        messages = data.get("messages") or [{"role": "user", "content": data["prompt"]}]
        rendered = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        assert counter.render_chat(messages) == rendered


@pytest.mark.parametrize("slug", GENERATION_SLUGS + ENCODER_SLUGS)
def test_context_limit_matches_transformers(slug):
    spec = demo_spec(slug)
    tokenizer = transformers_tokenizer(spec)
    counter = token_counter(spec)
    assert context_limit(spec, counter) == context_limit(spec, tokenizer)
    # Without the listing's context, the tokenizer's own (or none) decides.
    unset = replace(spec, max_context=None)
    assert context_limit(unset, counter) == context_limit(unset, tokenizer)


@pytest.mark.parametrize("slug", ENCODER_SLUGS)
def test_encoder_counts_match_transformers(slug):
    spec = demo_spec(slug)
    tokenizer = transformers_tokenizer(spec)
    counter = token_counter(spec)
    # LONG is beyond the truncation length that the model's tokenizer.json carries.
    texts = ["A cat sits on the mat.", "", "Ünïcödé 日本語 🦊", LONG, "  spaced  out  "]
    assert [counter.count(text) for text in texts] == token_counts(tokenizer, texts)


def test_a_folder_without_tokenizer_json_is_left_to_the_worker(tmp_path):
    source = loading.local_path(demo_spec("all-minilm-l6-v2").parsed_source)
    folder = shutil.copytree(source, tmp_path / "model")
    (folder / TOKENIZER_FILE).unlink()
    assert token_counter(demo_spec("all-minilm-l6-v2", source=f"path:{folder}")) is None


def test_an_unconverted_gguf_file_is_left_to_the_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path))
    assert token_counter(demo_spec("smollm2-135m-instruct")) is None


def test_the_worker_refuses_a_prompt_the_web_could_not_count(smollm2_spec, smollm2):
    data = {"messages": [{"role": "user", "content": "hi " * 3000}]}
    count = len(encode_prompt(smollm2.tokenizer, data))
    with pytest.raises(InvalidInput) as refused:
        list(get_runner("text-generation").run(smollm2_spec, data))
    assert refused.value.message == (
        f"input.messages is {count} tokens; this model's context is 2048 tokens."
    )


def test_the_worker_refuses_a_text_longer_than_the_encoder_reads(minilm_spec, minilm):
    with pytest.raises(InvalidInput) as refused:
        list(get_runner("embeddings").run(minilm_spec, {"input": ["short", LONG]}))
    assert refused.value.param == "input.input[1]"
