"""Batched generation inside one worker process: aggregate tokens/s with 1, 8 and 32
concurrent requests for the same model, against serving them one at a time.

Each concurrent request runs in its own thread (as on a Celery threads-pool worker) and
reads its stream through `GenerationBatcher`; the one-at-a-time figure runs requests back
to back through the unbatched backend. Greedy decoding and a fixed `max_new_tokens`, so
every request generates the same number of tokens unless the model stops early; tokens
are counted, not assumed. Figures are medians over repeats, with the min-max spread.

    .venv/bin/python bench/batching.py [--concurrency 1,8,32] [--repeats 3]
        [--max-new-tokens 32]      (MODEL_DEVICE=cuda for the GPU)
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import replace
from typing import Any

from bench.runtime import GENERATION_PROMPT, demo_specs, setup_django, spread

MODEL = "smollm2-135m-instruct"


def _prompts(count: int) -> list[dict[str, str]]:
    # Distinct prompts of different lengths, so the batch really is left-padded.
    return [{"prompt": f"{GENERATION_PROMPT} Chapter {i + 1}."} for i in range(count)]


def _jobs(backend: Any, spec: Any, count: int, max_new_tokens: int) -> list[tuple]:
    from inference.runners.text_generation import resolve_params

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


def batched(batcher: Any, jobs: list[tuple]) -> float:
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


def run(
    concurrency: tuple[int, ...] = (1, 8, 32),
    repeats: int = 3,
    max_new_tokens: int = 32,
) -> dict[str, Any]:
    import torch

    from inference.loading import Arch, get_model
    from inference.runners.batching import GenerationBatcher
    from inference.runners.text_generation import TransformersBackend

    spec = demo_specs()[MODEL]
    loaded = get_model(spec, Arch.CAUSAL_LM)
    backend = TransformersBackend(spec, loaded)
    # A window long enough for every thread to join the first batch.
    batcher = GenerationBatcher(loaded, backend.eos_ids, max(concurrency), window=0.05)
    # Serial throughput does not depend on how many are waiting: a few requests suffice.
    serial_jobs = _jobs(backend, spec, min(4, max(concurrency)), max_new_tokens)
    batch_jobs = {count: _jobs(backend, spec, count, max_new_tokens) for count in concurrency}
    one_at_a_time(backend, serial_jobs[:1])  # warm-up
    samples: dict[str, list[float]] = {"one_at_a_time": []}
    # Interleaved: a machine that gets busier mid-run slows every configuration alike.
    for _ in range(repeats):
        samples["one_at_a_time"].append(one_at_a_time(backend, serial_jobs))
        for count, jobs in batch_jobs.items():
            samples.setdefault(f"batched_{count}", []).append(batched(batcher, jobs))
    return {
        "device": str(loaded.device),
        "gpu": torch.cuda.get_device_name() if loaded.device.type == "cuda" else None,
        "dtype": spec.dtype,
        "max_new_tokens": max_new_tokens,
        **{name: spread(values) for name, values in samples.items()},
    }


def report(results: dict[str, Any]) -> str:
    serial = results["one_at_a_time"]["median"]
    lines = [
        f"batched generation, {MODEL} on {results['gpu'] or results['device']}, "
        f"{results['max_new_tokens']} new tokens per request",
        f"  one at a time      {serial:8.1f} tok/s",
    ]
    for key, stats in results.items():
        if key.startswith("batched_"):
            lines.append(
                f"  {key.removeprefix('batched_'):>3} concurrent     {stats['median']:8.1f} tok/s "
                f"({stats['min']:.1f}-{stats['max']:.1f}, n={stats['n']}), "
                f"x{stats['median'] / serial:.2f} vs one at a time"
            )
    return "\n".join(lines)


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
