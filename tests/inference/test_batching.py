"""Batched generation on the real SmolLM2 (CPU, float32): each request streams what it
would have streamed alone, rows end independently, and a consumer that leaves frees its
row while the others finish."""

from __future__ import annotations

import gc
import threading
import weakref
from dataclasses import replace

import pytest
import torch
from django.test import override_settings

from inference.loading import Arch, LoadedModel, LoadKey, ModelCache, load_key
from inference.runners.batching import (
    BatchedTransformersBackend,
    GenerationBatcher,
    batcher_for,
)
from inference.runners.generation import resolve_params
from inference.runners.text_generation import TextGenerationRunner
from inference.runners.transformers_backend import TransformersBackend
from tests.inference.helpers import demo_spec

PROMPTS = [
    {"prompt": "Name three colors."},
    {"prompt": "What is the capital of France? Answer in one short sentence, please."},
    {"messages": [{"role": "user", "content": "Count to five."}]},
]


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
    alone = [list(single.deltas(prompt, job_params)) for prompt, job_params in jobs]

    together = run_concurrently(batcher, jobs)

    # Each row stops where it would alone, the others going on past it in the same batch.
    assert together == alone
    assert max(batcher.batch_sizes) > 1
    assert len(together[1]) > len(together[0]) > len(together[2]) == 1


def test_a_consumer_that_leaves_frees_its_row_and_the_others_finish(spec, single, batcher):
    jobs = [(single.encode(data), greedy(spec, data, max_new_tokens=12)) for data in PROMPTS]
    alone = [list(single.deltas(prompt, job_params)) for prompt, job_params in jobs]

    together = run_concurrently(batcher, jobs, stop_after={0: 2})

    assert together[0] == alone[0][:2]
    assert together[1:] == alone[1:]


def test_sampling_rows_keep_their_own_seed(spec, single, batcher):
    data = PROMPTS[0]
    sampled = resolve_params(spec, {**data, "temperature": 0.9, "max_new_tokens": 10})
    prompt = single.encode(data)
    jobs = [(prompt, replace(sampled, seed=seed)) for seed in (7, 7, 8)]
    alone = [list(single.deltas(prompt, job_params)) for _, job_params in jobs]

    together = run_concurrently(batcher, jobs)

    # Each row draws from its own generator, seeded as it would be alone.
    assert together == alone
    assert alone[0] != alone[2]  # the seed matters, so the comparison above can fail


def test_the_runner_uses_the_static_batcher_when_configured(spec):
    runner = TextGenerationRunner()
    with override_settings(
        GENERATION_MAX_BATCH=4, GENERATION_BATCHING="static", GENERATION_BATCH_WINDOW_MS=1
    ):
        assert isinstance(runner.backend(spec, PROMPTS[0]), BatchedTransformersBackend)
    assert isinstance(runner.backend(spec, PROMPTS[0]), TransformersBackend)
    assert not isinstance(runner.backend(spec, PROMPTS[0]), BatchedTransformersBackend)


def _generate_batched_then_evict(spec) -> list[weakref.ref]:
    """Loads a private copy of the model through the real loader, streams two requests
    through its shared batcher, then has the cache evict it; returns weak references to
    what was loaded. A function of its own, so that none of its locals outlive it."""
    cache = ModelCache(max_bytes=None)
    key = load_key(spec, Arch.CAUSAL_LM)
    loaded = cache.get(key)
    backend = BatchedTransformersBackend(spec, loaded, max_batch=4, window=0.5)
    jobs = [(backend.encode(data), greedy(spec, data, max_new_tokens=3)) for data in PROMPTS[:2]]
    assert all(run_concurrently(backend.batcher, jobs))
    assert max(backend.batcher.batch_sizes) == 2
    cache.max_bytes = 1  # the next load evicts everything else
    cache.get(load_key(demo_spec("all-minilm-l6-v2"), Arch.ENCODER))
    assert key not in cache
    return [weakref.ref(loaded), weakref.ref(loaded.model)]


def test_an_evicted_model_is_freed_once_its_batched_generations_end(spec):
    released = _generate_batched_then_evict(spec)
    gc.collect()
    # Checked while the batcher's thread still idles (IDLE_SECONDS): it must not pin it.
    assert [ref() for ref in released] == [None, None]


def test_a_model_at_a_freed_models_address_gets_a_batcher_of_its_own():
    key = LoadKey("path:/models/fake", "", "cpu", "float32", Arch.CAUSAL_LM)
    batchers = []
    for _ in range(3):
        model = LoadedModel(key, torch.nn.Identity(), None, 0)
        batcher = batcher_for(model, frozenset({0}), max_batch=2, window=0)
        assert batcher.loaded is model and batcher not in batchers
        batchers.append(batcher)
        freed = weakref.ref(model)
        del model
        gc.collect()
        assert freed() is None
