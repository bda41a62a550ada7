"""Batched generation on the real SmolLM2 (CPU, float32): each request streams what it
would have streamed alone, rows end independently, and a consumer that leaves frees its
row while the others finish."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from django.test import override_settings

from inference.loading import Arch, get_model
from inference.runners.batching import BatchedTransformersBackend, GenerationBatcher
from inference.runners.text_generation import (
    TextGenerationRunner,
    TransformersBackend,
    resolve_params,
)
from tests.inference.helpers import demo_spec

PROMPTS = [
    {"prompt": "Name three colors."},
    {"prompt": "What is the capital of France? Answer in one short sentence, please."},
    {"messages": [{"role": "user", "content": "Count to five."}]},
]


@pytest.fixture(scope="module")
def spec():
    # float32: batched and single matmuls agree closely enough for greedy tokens to match.
    return demo_spec("smollm2-135m-instruct", dtype="float32")


@pytest.fixture(scope="module")
def loaded(spec):
    return get_model(spec, Arch.CAUSAL_LM)


@pytest.fixture(scope="module")
def single(spec, loaded):
    return TransformersBackend(spec, loaded)


@pytest.fixture
def batcher(loaded, single):
    # A wide window, so that requests started from threads land in one batch.
    return GenerationBatcher(loaded, single.eos_ids, max_batch=8, window=0.5)


def greedy(spec, data, **changes):
    return replace(resolve_params(spec, {**data, "temperature": 0}), **changes)


def run_concurrently(batcher, jobs, stop_after=None):
    """Each job is (prompt ids, params); returns each job's deltas. A job whose index is
    in `stop_after` stops reading after that many deltas."""
    stop_after = stop_after or {}
    results: list[list[str]] = [[] for _ in jobs]

    def consume(index, prompt, job_params):
        stream = batcher.deltas(prompt, job_params)
        for delta in stream:
            results[index].append(delta)
            if len(results[index]) == stop_after.get(index):
                stream.close()
                return

    threads = [threading.Thread(target=consume, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_each_request_streams_what_it_would_alone(spec, single, batcher):
    jobs = [(single.encode(data), greedy(spec, data, max_new_tokens=12)) for data in PROMPTS]
    alone = [list(single.deltas(prompt, job_params)) for prompt, job_params in jobs]

    together = run_concurrently(batcher, jobs)

    assert together == alone
    assert max(batcher.batch_sizes) > 1  # they really shared forward passes
    assert all("".join(deltas).strip() for deltas in together)


def test_rows_end_at_their_own_length(spec, single, batcher):
    lengths = [3, 9, 1]
    jobs = [
        (single.encode(data), greedy(spec, data, max_new_tokens=n))
        for data, n in zip(PROMPTS, lengths, strict=True)
    ]
    together = run_concurrently(batcher, jobs)
    # One delta per generated token (EOS ends a row early, never late).
    assert [len(deltas) <= n for deltas, n in zip(together, lengths, strict=True)] == [True] * 3
    assert len(together[1]) > len(together[2])


def test_a_consumer_that_leaves_frees_its_row_and_the_others_finish(spec, single, batcher):
    jobs = [(single.encode(data), greedy(spec, data, max_new_tokens=12)) for data in PROMPTS]
    alone = [list(single.deltas(prompt, job_params)) for prompt, job_params in jobs]

    together = run_concurrently(batcher, jobs, stop_after={0: 2})

    assert together[0] == alone[0][:2]
    assert together[1:] == alone[1:]


def test_sampling_rows_keep_their_own_seed(spec, single, batcher):
    data = PROMPTS[0]
    sampled = replace(resolve_params(spec, {**data, "temperature": 0.9, "seed": 7}))
    prompt = single.encode(data)
    first, second = run_concurrently(batcher, [(prompt, replace(sampled, max_new_tokens=10))] * 2)
    assert first == second  # same seed, same row state: same tokens, batched or not


def test_the_runner_uses_the_batcher_when_configured(spec):
    runner = TextGenerationRunner()
    with override_settings(GENERATION_MAX_BATCH=4, GENERATION_BATCH_WINDOW_MS=1):
        assert isinstance(runner.backend(spec, PROMPTS[0]), BatchedTransformersBackend)
    assert isinstance(runner.backend(spec, PROMPTS[0]), TransformersBackend)
    assert not isinstance(runner.backend(spec, PROMPTS[0]), BatchedTransformersBackend)
