"""Batched generation inside one worker process: one at a time vs static batching vs
continuous batching, side by side in one run.

- aggregate tokens/s with 1, 8 and 32 concurrent requests for the same model (each in its
  own thread, as on a Celery threads-pool worker), against serving them back to back;
- time to first token of a request that arrives while 31 others are mid-generation: the
  static batcher makes it wait for the running batch to end, the continuous one takes it
  in at the next step;
- peak memory of each configuration (GPU: allocated by torch; CPU: the process's RSS
  sampled during the run, which the allocator rarely gives back, so read it as an upper
  bound in run order).

Greedy decoding and a fixed `max_new_tokens`; tokens are counted, not assumed. Figures
are medians over repeats with the min-max spread; configurations interleave per repeat.

    .venv/bin/python -m bench.batching [--concurrency 1,8,32] [--repeats 3]
        [--max-new-tokens 32]      (MODEL_DEVICE=cuda for the GPU)
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bench.runtime import GENERATION_PROMPT, demo_specs, setup_django, spread

MODEL = "smollm2-135m-instruct"
MODES = ("static", "continuous")
# The newcomer arrives once every one of the others has streamed this many tokens.
NEWCOMER_AFTER_TOKENS = 4


def _prompts(count: int) -> list[dict[str, str]]:
    # Distinct prompts of different lengths, so the batch really is left-padded.
    return [{"prompt": f"{GENERATION_PROMPT} Chapter {i + 1}."} for i in range(count)]


def _jobs(backend: Any, spec: Any, count: int, max_new_tokens: int) -> list[tuple]:
    from inference.runners.generation import resolve_params

    jobs = []
    for data in _prompts(count):
        params = resolve_params(spec, {**data, "temperature": 0})
        jobs.append((backend.encode(data), replace(params, max_new_tokens=max_new_tokens)))
    return jobs


def one_at_a_time(backend: Any, jobs: list[tuple]) -> float:
    started, tokens = time.perf_counter(), 0
    for prompt, params in jobs:
        tokens += sum(1 for _ in backend.deltas(prompt, params))
    return tokens / (time.perf_counter() - started)


def concurrently(batcher: Any, jobs: list[tuple]) -> float:
    counts = [0] * len(jobs)

    def consume(index: int, prompt: Any, params: Any) -> None:
        counts[index] = sum(1 for _ in batcher.deltas(prompt, params))

    threads = [threading.Thread(target=consume, args=(i, *job)) for i, job in enumerate(jobs)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def newcomer_ttft(batcher: Any, running: list[tuple], newcomer: tuple) -> float:
    """Seconds to the first token of `newcomer`, submitted once every running request has
    streamed NEWCOMER_AFTER_TOKENS tokens (or ended)."""
    progress = [0] * len(running)
    ready = threading.Event()

    def consume(index: int, prompt: Any, params: Any) -> None:
        for _ in batcher.deltas(prompt, params):
            progress[index] += 1
            if progress[index] == NEWCOMER_AFTER_TOKENS:
                _mark_ready()
        progress[index] = max(progress[index], NEWCOMER_AFTER_TOKENS)
        _mark_ready()

    def _mark_ready() -> None:
        if min(progress) >= NEWCOMER_AFTER_TOKENS:
            ready.set()

    threads = [threading.Thread(target=consume, args=(i, *job)) for i, job in enumerate(running)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    stream = batcher.deltas(*newcomer)
    next(stream)
    ttft = time.perf_counter() - started
    stream.close()
    for thread in threads:
        thread.join()
    return ttft


def agreement(spec: Any, count: int, max_new_tokens: int) -> dict[str, Any]:
    """Greedy outputs of `count` requests run together through the continuous batcher
    against each run alone: the share identical, and where the first divergent ones part
    (batched and single matmuls round differently; in bfloat16 a near-tie can flip)."""
    from inference.loading import Arch, get_model
    from inference.runners.continuous_batching import ContinuousBatcher
    from inference.runners.transformers_backend import TransformersBackend

    loaded = get_model(spec, Arch.CAUSAL_LM)
    backend = TransformersBackend(spec, loaded)
    jobs = _jobs(backend, spec, count, max_new_tokens)
    alone = [list(backend.deltas(prompt, params)) for prompt, params in jobs]
    batcher = ContinuousBatcher(loaded, backend.eos_ids, count)
    together: list[list[str]] = [[] for _ in jobs]

    def consume(index: int, prompt: Any, params: Any) -> None:
        together[index] = list(batcher.deltas(prompt, params))

    threads = [threading.Thread(target=consume, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    divergences = [_first_difference(a, b) for a, b in zip(alone, together, strict=True) if a != b]
    return {
        "dtype": spec.dtype,
        "requests": count,
        "identical": count - len(divergences),
        "first_divergence": min(divergences) if divergences else None,
    }


def _first_difference(a: list[str], b: list[str]) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


class PeakMemory:
    """Peak memory while a block runs: torch's allocator on a GPU, sampled RSS on a CPU."""

    def __init__(self, device: Any):
        self.device = device
        self.peak = 0

    def measure(self, action: Callable[[], Any]) -> Any:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            result = action()
            self.peak = max(self.peak, torch.cuda.max_memory_allocated(self.device))
            return result
        return self._sampling_rss(action)

    def _sampling_rss(self, action: Callable[[], Any]) -> Any:
        import psutil

        process, done = psutil.Process(), threading.Event()

        def sample() -> None:
            while not done.wait(0.01):
                self.peak = max(self.peak, process.memory_info().rss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            return action()
        finally:
            done.set()
            sampler.join()


def _batchers(loaded: Any, eos_ids: frozenset[int], max_batch: int) -> dict[str, Any]:
    from inference.runners.batching import GenerationBatcher
    from inference.runners.continuous_batching import ContinuousBatcher

    return {
        # A window long enough for every thread to join the first batch.
        "static": GenerationBatcher(loaded, eos_ids, max_batch, window=0.05),
        "continuous": ContinuousBatcher(loaded, eos_ids, max_batch),
    }


def run(
    concurrency: tuple[int, ...] = (1, 8, 32),
    repeats: int = 3,
    max_new_tokens: int = 32,
) -> dict[str, Any]:
    import torch

    from inference.loading import Arch, get_model
    from inference.runners.transformers_backend import TransformersBackend

    spec = demo_specs()[MODEL]
    loaded = get_model(spec, Arch.CAUSAL_LM)
    backend = TransformersBackend(spec, loaded)
    batchers = _batchers(loaded, backend.eos_ids, max(concurrency))
    # Serial throughput does not depend on how many are waiting: a few requests suffice.
    serial_jobs = _jobs(backend, spec, min(4, max(concurrency)), max_new_tokens)
    batch_jobs = {count: _jobs(backend, spec, count, max_new_tokens) for count in concurrency}
    # The others run long enough to be mid-generation when the newcomer arrives.
    running = _jobs(backend, spec, max(concurrency) - 1, max_new_tokens * 2)
    newcomer = _jobs(backend, spec, 1, max_new_tokens)[0]
    one_at_a_time(backend, serial_jobs[:1])  # warm-up
    for batcher in batchers.values():
        concurrently(batcher, serial_jobs[:2])
    memory = {name: PeakMemory(loaded.device) for name in ("one_at_a_time", *MODES)}
    samples: dict[str, list[float]] = {}
    # Interleaved: a machine that gets busier mid-run slows every configuration alike.
    for _ in range(repeats):
        samples.setdefault("one_at_a_time", []).append(
            memory["one_at_a_time"].measure(lambda: one_at_a_time(backend, serial_jobs))
        )
        for mode, batcher in batchers.items():
            for count, jobs in batch_jobs.items():
                rate = memory[mode].measure(lambda b=batcher, j=jobs: concurrently(b, j))
                samples.setdefault(f"{mode}_{count}", []).append(rate)
            ttft = memory[mode].measure(lambda b=batcher: newcomer_ttft(b, running, newcomer))
            samples.setdefault(f"{mode}_newcomer_ttft", []).append(ttft)
    batchers["continuous"].close()
    agreements = [
        agreement(replace(spec, dtype=dtype), max(concurrency), max_new_tokens)
        for dtype in dict.fromkeys((spec.dtype, "float32"))
    ]
    return {
        "agreement": agreements,
        "device": str(loaded.device),
        "gpu": torch.cuda.get_device_name() if loaded.device.type == "cuda" else None,
        "dtype": spec.dtype,
        "max_new_tokens": max_new_tokens,
        "concurrency": concurrency,
        "peak_memory_mib": {name: peak.peak / 2**20 for name, peak in memory.items()},
        **{name: spread(values) for name, values in samples.items()},
    }


def report(results: dict[str, Any]) -> str:
    serial = results["one_at_a_time"]["median"]
    others = max(results["concurrency"]) - 1
    lines = [
        f"batched generation, {MODEL} on {results['gpu'] or results['device']}, "
        f"{results['max_new_tokens']} new tokens per request",
        f"  one at a time          {serial:8.1f} tok/s",
    ]
    for count in results["concurrency"]:
        for mode in MODES:
            stats = results[f"{mode}_{count}"]
            lines.append(
                f"  {count:>3} concurrent, {mode:<10} {stats['median']:8.1f} tok/s "
                f"({stats['min']:.1f}-{stats['max']:.1f}, n={stats['n']}), "
                f"x{stats['median'] / serial:.2f} vs one at a time"
            )
    for mode in MODES:
        stats = results[f"{mode}_newcomer_ttft"]
        lines.append(
            f"  first token of a newcomer while {others} run, {mode:<10} "
            f"{stats['median'] * 1000:8.0f} ms ({stats['min'] * 1000:.0f}-"
            f"{stats['max'] * 1000:.0f})"
        )
    for name, mib in results["peak_memory_mib"].items():
        lines.append(f"  peak memory, {name:<13} {mib:8.0f} MiB")
    lines.extend(f"  {agreement_line(item)}" for item in results["agreement"])
    return "\n".join(lines)


def agreement_line(item: dict[str, Any]) -> str:
    line = (
        f"greedy, {item['dtype']}: {item['identical']} of {item['requests']} outputs "
        "identical batched (continuous) and alone"
    )
    if item["first_divergence"] is not None:
        line += f"; the earliest divergence at output token {item['first_divergence']}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    setup_django()
    concurrency = tuple(int(part) for part in args.concurrency.split(","))
    print(report(run(concurrency, args.repeats, args.max_new_tokens)))


if __name__ == "__main__":
    main()
