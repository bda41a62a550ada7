"""Embeddings and zero-shot classification with the real all-MiniLM-L6-v2."""

from __future__ import annotations

import pytest
import torch

from inference.runners import FinishReason, get_runner
from tests.inference.helpers import collect, demo_spec

pytestmark = pytest.mark.models


def embed(spec, texts, should_cancel=None):
    runner = get_runner("embeddings")
    stream = (
        runner.run(spec, {"input": texts})
        if should_cancel is None
        else runner.run(spec, {"input": texts}, should_cancel)
    )
    return collect(stream)[1]


def test_vectors_are_384_dims_and_normalized(minilm_spec, minilm):
    result = embed(minilm_spec, ["A cat sits on the mat.", "Stock markets fell today."])
    vectors = torch.tensor(result.output)
    assert vectors.shape == (2, 384)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(2), atol=1e-4)


def test_similar_sentences_are_closer(minilm_spec, minilm):
    cat, kitten, markets = torch.tensor(
        embed(minilm_spec, ["A cat sits on the mat.", "A kitten rests on a rug.",
                            "Stock markets fell sharply today."]).output
    )  # fmt: skip
    assert cat @ kitten > cat @ markets + 0.2


def test_single_string_and_token_counts(minilm_spec, minilm):
    result = embed(minilm_spec, "Hello world")
    assert len(result.output) == 1
    assert result.metrics.input_tokens == len(minilm.tokenizer("Hello world")["input_ids"])
    assert result.metrics.output_tokens == 0


def test_batches_give_the_same_vectors(minilm):
    texts = ["one", "two words", "three words here", "four", "five is the last one"]
    whole = torch.tensor(embed(demo_spec("all-minilm-l6-v2"), texts).output)
    split = torch.tensor(
        embed(demo_spec("all-minilm-l6-v2", options={"batch_size": 2}), texts).output
    )
    assert torch.allclose(whole, split, atol=1e-5)


def test_cancel_between_batches(minilm):
    spec = demo_spec("all-minilm-l6-v2", options={"batch_size": 2})
    calls = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > 1

    result = embed(spec, ["a", "b", "c", "d", "e"], should_cancel)
    assert result.finish_reason == FinishReason.CANCELED
    assert len(result.output) == 2


def classify(spec, data):
    return collect(get_runner("text-classification").run(spec, data))[1]


def test_classifier_ranks_i_love_this_positive(classifier_spec, minilm):
    result = classify(classifier_spec, {"text": "I love this"})
    labels = [item["label"] for item in result.output]
    scores = [item["score"] for item in result.output]
    assert labels[0] == "positive"
    assert sorted(labels) == ["negative", "neutral", "positive"]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1, abs=1e-4)
    assert result.metrics.input_tokens == len(minilm.tokenizer("I love this")["input_ids"])


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("This is the worst thing I have ever bought", "negative"),
        ("Terrible service, I want a refund", "negative"),
        ("The meeting is at 3 pm in room 4", "neutral"),
        ("Best purchase I've made all year!", "positive"),
    ],
)
def test_classifier_sentiment(classifier_spec, minilm, text, label):
    assert classify(classifier_spec, {"text": text}).output[0]["label"] == label


def test_classifier_with_topic_labels(classifier_spec, minilm):
    result = classify(
        classifier_spec,
        {
            "text": "The match ended 2-1 after extra time.",
            "labels": ["politics", "sports", "cooking"],
        },
    )
    assert result.output[0]["label"] == "sports"
    assert [item["label"] for item in result.output].count("sports") == 1
