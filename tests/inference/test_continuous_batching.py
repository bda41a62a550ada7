"""Continuous batching on the real SmolLM2 (CPU, float32): each request streams what it
would alone, token for token; a newcomer joins the running batch within a few steps; a
consumer that leaves frees its slot; one request's failure leaves the others alone; the
model is freed once evicted and its streams end."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from dataclasses import replace

import pytest
from django.test import override_settings

from inference.loading import Arch, ModelCache, load_key
from inference.runners import continuous_batching
from inference.runners.batching import BatchedTransformersBackend
from inference.runners.continuous_batching import (
    ContinuousBatchedBackend,
    ContinuousBatcher,
    GenerationFailed,
)
from inference.runners.generation import resolve_params
from inference.runners.text_generation import TextGenerationRunner
from inference.runners.transformers_backend import TransformersBackend
from tests.inference.helpers import collect, demo_spec, outputs

PROMPTS = [
    {"prompt": "Name three colors."},
    {"prompt": "What is the capital of France? Answer in one short sentence, please."},
    {"messages": [{"role": "user", "content": "Count to five."}]},
    {
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Write a haiku about the sea, then explain it."},
        ]
    },
]


@pytest.fixture
def batcher(loaded, single):
    # A batcher of its own per test, its engine stopped after it.
    batcher = ContinuousBatcher(loaded, single.eos_ids, max_batch=8)
    yield batcher
    batcher.close()


def params(spec, data, **changes):
    return replace(resolve_params(spec, {**data, "temperature": 0}), **changes)


def stream_in_threads(batcher, jobs, stop_after=None, started=None):
    """Each job is (prompt ids, params); returns each job's deltas (or its exception). A
    job whose index is in `stop_after` stops reading after that many deltas."""
    stop_after = stop_after or {}
    results: list = [[] for _ in jobs]

    def consume(index, prompt, job_params):
        stream = batcher.deltas(prompt, job_params)
        try:
            for delta in stream:
                results[index].append(delta)
                if len(results[index]) == stop_after.get(index):
                    stream.close()
                    return
        except GenerationFailed as exc:
            results[index] = exc

    threads = [threading.Thread(target=consume, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_greedy_outputs_equal_unbatched_token_for_token_at_mixed_lengths(spec, single, batcher):
    lengths = [5, 40, 1, 24]
    jobs = [
        (single.encode(data), params(spec, data, max_new_tokens=n))
        for data, n in zip(PROMPTS, lengths, strict=True)
    ]
    alone = [list(single.deltas(prompt, job_params)) for prompt, job_params in jobs]

    together = stream_in_threads(batcher, jobs)

    assert together == alone
    assert [len(deltas) for deltas in together] == [5, len(alone[1]), 1, len(alone[3])]
    assert all("".join(deltas).strip() for deltas in together)
    # They shared forward passes: about as many steps as the longest request has tokens.
    assert batcher.steps <= max(len(deltas) for deltas in together) + len(jobs)


def test_sampled_requests_keep_their_own_seed(spec, single, batcher):
    data = PROMPTS[0]
    sampled = resolve_params(spec, {**data, "temperature": 0.9, "top_p": 0.95})
    prompt = single.encode(data)
    jobs = [(prompt, replace(sampled, seed=seed, max_new_tokens=12)) for seed in (7, 7, 8)]
    jobs.append((single.encode(PROMPTS[1]), params(spec, PROMPTS[1], max_new_tokens=12)))
    alone = [list(single.deltas(p, job_params)) for p, job_params in jobs]

    together = stream_in_threads(batcher, jobs)

    # Each sampled request draws from its own generator, seeded as it would be alone,
    # next to a greedy one in the same batch.
    assert together == alone
    assert alone[0] != alone[2]  # the seed matters, so the comparison can fail


def test_a_newcomer_joins_the_running_batch_within_a_few_steps(spec, single, batcher):
    long_jobs = [
        (single.encode(data), params(spec, data, max_new_tokens=60)) for data in PROMPTS[:3]
    ]
    seen = [0, 0, 0]
    all_started = threading.Event()
    newcomer = {}

    def consume_long(index, prompt, job_params):
        for _ in batcher.deltas(prompt, job_params):
            seen[index] += 1
            if all(count >= 5 for count in seen):
                all_started.set()

    threads = [
        threading.Thread(target=consume_long, args=(i, *job)) for i, job in enumerate(long_jobs)
    ]
    for thread in threads:
        thread.start()
    assert all_started.wait(120)

    late = PROMPTS[3]
    steps_at_submit = batcher.steps
    stream = batcher.deltas(single.encode(late), params(spec, late, max_new_tokens=3))
    first = next(stream)
    newcomer["steps"] = batcher.steps - steps_at_submit
    newcomer["others_seen"] = list(seen)
    rest = list(stream)
    for thread in threads:
        thread.join(timeout=180)

    assert newcomer["steps"] <= 3  # its prefill and first token ran within a few steps
    assert all(count < 60 for count in newcomer["others_seen"])  # the others were mid-way
    alone = list(single.deltas(single.encode(late), params(spec, late, max_new_tokens=3)))
    assert [first, *rest] == alone
    assert seen[0] > 5 and all(count > 0 for count in seen)


def test_a_consumer_that_leaves_frees_its_slot_and_the_others_finish(spec, single, batcher):
    jobs = [(single.encode(data), params(spec, data, max_new_tokens=16)) for data in PROMPTS]
    alone = [list(single.deltas(prompt, job_params)) for prompt, job_params in jobs]

    together = stream_in_threads(batcher, jobs, stop_after={0: 2})

    assert together[0] == alone[0][:2]
    assert together[1:] == alone[1:]
    scheduler = batcher._engine.manager.batch_processor.scheduler
    deadline = time.monotonic() + 5
    while scheduler.has_pending_requests() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not scheduler.has_pending_requests()  # the canceled request's slot is free
    assert not batcher._engine.router.streams


def test_one_requests_failure_leaves_the_others_alone(spec, single, batcher, monkeypatch):
    # A sampling step that raises (as a NaN in one request's scores would) for one request.
    real = continuous_batching.sampling_processors

    def failing_for_seed_13(job_params):
        processors = real(job_params)
        if job_params.seed == 13:
            processors.append(lambda input_ids, scores: 1 / 0)
        return processors

    monkeypatch.setattr(continuous_batching, "sampling_processors", failing_for_seed_13)
    sampled = resolve_params(spec, {**PROMPTS[0], "temperature": 0.8, "max_new_tokens": 10})
    jobs = [(single.encode(PROMPTS[0]), replace(sampled, seed=13))]
    jobs += [(single.encode(data), params(spec, data, max_new_tokens=10)) for data in PROMPTS[1:]]
    alone = [list(single.deltas(prompt, job_params)) for prompt, job_params in jobs[1:]]

    together = stream_in_threads(batcher, jobs)

    assert isinstance(together[0], GenerationFailed)
    assert "division by zero" in str(together[0])
    assert together[1:] == alone
    # And the engine goes on serving.
    assert list(batcher.deltas(*jobs[1])) == alone[0]


def test_runner_streams_stop_strings_and_counts_per_request(spec):
    runner = TextGenerationRunner()
    data = {**PROMPTS[0], "temperature": 0, "max_new_tokens": 20, "stop": ["Blue"]}
    alone_events, alone = collect(runner.run(spec, data))
    with override_settings(GENERATION_MAX_BATCH=4):
        backend = runner.backend(spec, data)
        assert isinstance(backend, ContinuousBatchedBackend)
        events, result = collect(runner.run(spec, data))
    backend.batcher.close()
    assert outputs(events) == outputs(alone_events)
    assert result.output == alone.output and "Blue" not in result.output
    assert result.metrics.output_tokens == alone.metrics.output_tokens
    assert result.finish_reason == alone.finish_reason


def test_static_batching_stays_available(spec):
    runner = TextGenerationRunner()
    with override_settings(GENERATION_MAX_BATCH=4, GENERATION_BATCHING="static"):
        assert isinstance(runner.backend(spec, PROMPTS[0]), BatchedTransformersBackend)
    backend = runner.backend(spec, PROMPTS[0])
    assert type(backend) is TransformersBackend


def _generate_then_evict(spec) -> tuple[list[weakref.ref], ContinuousBatcher]:
    """Loads a private copy of the model, streams two requests through its continuous
    batcher, then has the cache evict it. A function of its own, so that none of its
    locals outlive it."""
    cache = ModelCache(max_bytes=None)
    key = load_key(spec, Arch.CAUSAL_LM)
    loaded = cache.get(key)
    backend = ContinuousBatchedBackend(spec, loaded, max_batch=4)
    jobs = [(backend.encode(data), params(spec, data, max_new_tokens=3)) for data in PROMPTS[:2]]
    assert all(stream_in_threads(backend.batcher, jobs))
    cache.max_bytes = 1  # the next load evicts everything else
    cache.get(load_key(demo_spec("all-minilm-l6-v2"), Arch.ENCODER))
    assert key not in cache
    return [weakref.ref(loaded), weakref.ref(loaded.model)], backend.batcher


def test_an_evicted_model_is_freed_once_its_generations_end(spec):
    released, batcher = _generate_then_evict(spec)
    gc.collect()
    # Freeing the model stops its engine (joined), which held the model strongly.
    assert [ref() for ref in released] == [None, None]
    assert batcher._engine is None
