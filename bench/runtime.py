"""Runtime benchmarks; they print figures and never fail a build.

- generation: tokens/s of the runner's streaming path against a bare `model.generate` on
  the same model, prompt and settings (greedy, so both produce the same tokens);
- loading: cold (an empty cache: read the weights) against warm (a cache hit) for each
  demo model, and the one-time GGUF conversion;
- embeddings: texts/s at batch 1 and batch 64.

Every figure is the median of repeated runs, with the min-max spread. Runs of the two
generation paths are interleaved so that a busy machine slows both alike.

    .venv/bin/python bench/runtime.py [--repeats 5] [--max-new-tokens 64] [--skip-conversion]
        [--conversion-repeats 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GENERATION_PROMPT = "Write a long story about a dragon who learns to fly."
EMBEDDING_TEXT = "The quick brown fox jumps over the lazy dog near the river bank at dawn."


def setup_django() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import django

    django.setup()


def with_django(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`function` after setup_django(): for benchmarks whose run() expects it done."""
    setup_django()
    return function(*args, **kwargs)


def spread(values: Iterable[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "median": statistics.median(values),
        "min": values[0],
        "max": values[-1],
        "n": len(values),
    }


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def demo_specs() -> dict[str, Any]:
    from models_hub.demo import DEMO_LISTINGS
    from models_hub.models import ModelListing

    specs = {}
    for entry in DEMO_LISTINGS:
        fields = {key: value for key, value in entry.items() if key != "tags"}
        specs[entry["slug"]] = ModelListing(**fields).runtime_spec
    return specs


# --- Generation --------------------------------------------------------------------------


class ForwardClock:
    """Time spent inside the model's forward passes, via hooks on the top-level module.

    Wall time minus this is each path's own per-token work (sampling, decoding, stop
    checks, bookkeeping), which a busy machine distorts far less than tokens/s.
    """

    def __init__(self, model: Any):
        self.seconds = 0.0
        self._started = 0.0
        model.register_forward_pre_hook(self._start)
        model.register_forward_hook(self._stop)

    def _start(self, *_: Any) -> None:
        self._started = time.perf_counter()

    def _stop(self, *_: Any) -> None:
        self.seconds += time.perf_counter() - self._started


def bench_generation(spec: Any, repeats: int, max_new_tokens: int) -> dict[str, Any]:
    import torch

    from inference.loading import Arch, get_model
    from inference.runners import EventType, get_runner
    from inference.runners.transformers_backend import encode_prompt

    loaded = get_model(spec, Arch.CAUSAL_LM)
    data = {"prompt": GENERATION_PROMPT, "temperature": 0, "max_new_tokens": max_new_tokens}
    ids = torch.tensor([encode_prompt(loaded.tokenizer, data)], device=loaded.device)
    runner = get_runner(spec.task)
    clock = ForwardClock(loaded.model)

    def streamed() -> int:
        events = list(runner.run(spec, data))
        assert any(event.type == EventType.OUTPUT for event in events)
        return events[-1].data.metrics.output_tokens

    def bare() -> int:
        with torch.inference_mode():
            out = loaded.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
            )
        return out.shape[1] - ids.shape[1]

    streamed(), bare()  # warm-up: first-call kernel setup is not throughput
    rates: dict[str, list[float]] = {"runner": [], "bare": []}
    overheads: dict[str, list[float]] = {"runner": [], "bare": []}
    counts = set()
    for index in range(repeats):
        paths = [("runner", streamed), ("bare", bare)]
        # Alternate which path goes first, so a drifting machine load favours neither.
        for name, path in paths if index % 2 == 0 else reversed(paths):
            clock.seconds = 0.0
            elapsed, tokens = timed(path)
            rates[name].append(tokens / elapsed)
            overheads[name].append((elapsed - clock.seconds) / tokens)
            counts.add(tokens)
    runner_stats, bare_stats = spread(rates["runner"]), spread(rates["bare"])
    return {
        "model": spec.source,
        "dtype": str(loaded.model.dtype).removeprefix("torch."),
        "device": str(loaded.device),
        "new_tokens": sorted(counts),
        "runner_tokens_per_s": runner_stats,
        "bare_generate_tokens_per_s": bare_stats,
        "runner_vs_bare": runner_stats["median"] / bare_stats["median"],
        # Per interleaved pair: both paths ran back to back under the same machine load.
        "runner_vs_bare_pairs": spread(
            runner / bare for runner, bare in zip(rates["runner"], rates["bare"], strict=True)
        ),
        "runner_outside_forward_s_per_token": spread(overheads["runner"]),
        "bare_outside_forward_s_per_token": spread(overheads["bare"]),
    }


# --- Loading -------------------------------------------------------------------------------


def bench_loading(specs: dict[str, Any], repeats: int) -> dict[str, Any]:
    from inference.loading import Arch, ModelCache, load_key

    arch_by_task = {
        "text-generation": Arch.CAUSAL_LM,
        "embeddings": Arch.ENCODER,
        "text-classification": Arch.ENCODER,
    }
    figures: dict[str, Any] = {}
    for slug, spec in specs.items():
        if spec.parsed_source.is_builtin:
            figures[slug] = {"note": "builtin: no weights to load"}
            continue
        if spec.task not in arch_by_task:
            continue  # the vision runners load their own models: bench/vision.py times them
        key = load_key(spec, arch_by_task[spec.task])
        cold, warm = [], []
        for _ in range(repeats):
            cache = ModelCache(max_bytes=None)
            cold.append(timed(lambda cache=cache, key=key: cache.get(key))[0])
            warm.append(timed(lambda cache=cache, key=key: cache.get(key))[0])
        figures[slug] = {"cold_s": spread(cold), "warm_s": spread(warm)}
    return figures


def bench_gguf_conversion(spec: Any, repeats: int = 1) -> dict[str, Any]:
    """Conversions into scratch cache folders (the real one is left as it is)."""
    from inference import loading
    from inference.spec import parse_source

    gguf = loading.local_path(parse_source(spec.source))
    previous = os.environ.get("MODEL_CACHE_DIR")
    seconds = []
    try:
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="bench-gguf-") as scratch:
                os.environ["MODEL_CACHE_DIR"] = scratch
                seconds.append(timed(lambda: loading.converted_gguf_dir(gguf))[0])
    finally:
        if previous is None:
            os.environ.pop("MODEL_CACHE_DIR", None)
        else:
            os.environ["MODEL_CACHE_DIR"] = previous
    return {"model": spec.source, "seconds": spread(seconds)}


# --- Embeddings -------------------------------------------------------------------------------


def bench_embeddings(spec: Any, repeats: int) -> dict[str, Any]:
    from inference.runners import get_runner

    runner = get_runner(spec.task)
    figures = {}
    for batch in (1, 64):
        texts = [f"{EMBEDDING_TEXT} ({index})" for index in range(batch)]
        list(runner.run(spec, {"input": texts}))  # warm-up
        rates = []
        for _ in range(repeats):
            elapsed, _ = timed(lambda texts=texts: list(runner.run(spec, {"input": texts})))
            rates.append(batch / elapsed)
        figures[f"batch_{batch}_texts_per_s"] = spread(rates)
    return figures


# --- Entry points -------------------------------------------------------------------------------


def run(
    repeats: int = 5,
    max_new_tokens: int = 64,
    include_conversion: bool = True,
    conversion_repeats: int = 1,
) -> dict[str, Any]:
    setup_django()
    import torch

    specs = demo_specs()
    results: dict[str, Any] = {
        "torch_threads": torch.get_num_threads(),
        "loading": bench_loading(specs, repeats),
        "generation": bench_generation(specs["smollm2-135m-instruct"], repeats, max_new_tokens),
        "embeddings": bench_embeddings(specs["all-minilm-l6-v2"], repeats),
    }
    if include_conversion:
        results["gguf_conversion"] = bench_gguf_conversion(
            specs["smollm2-135m-instruct"], conversion_repeats
        )
    return results


def fmt(stats: dict[str, float], unit: str, scale: float = 1.0, digits: int = 1) -> str:
    median, low, high = (stats[k] * scale for k in ("median", "min", "max"))
    return (
        f"{median:.{digits}f} {unit} (min {low:.{digits}f}, max {high:.{digits}f}, n={stats['n']})"
    )


def report(results: dict[str, Any]) -> str:
    generation = results["generation"]
    outside = {
        "runner": generation["runner_outside_forward_s_per_token"],
        "bare": generation["bare_outside_forward_s_per_token"],
    }
    lines = [
        f"torch threads: {results['torch_threads']}",
        "",
        f"Generation: {generation['model']} ({generation['dtype']}, {generation['device']}), "
        f"greedy, {generation['new_tokens']} new tokens",
        f"  runner (streaming)  {fmt(generation['runner_tokens_per_s'], 'tok/s')}",
        f"  bare generate()     {fmt(generation['bare_generate_tokens_per_s'], 'tok/s')}",
        f"  runner / bare       {generation['runner_vs_bare']:.1%}",
        "  time per token outside the model's forward pass:",
        f"    runner            {fmt(outside['runner'], 'us', 1e6, 0)}",
        f"    bare generate()   {fmt(outside['bare'], 'us', 1e6, 0)}",
        "",
        "Loading (cold: empty cache, weights from disk; warm: cache hit)",
    ]
    for slug, figures in results["loading"].items():
        if "note" in figures:
            lines.append(f"  {slug:30} {figures['note']}")
            continue
        lines.append(f"  {slug:30} cold {fmt(figures['cold_s'], 'ms', 1000)}")
        lines.append(f"  {'':30} warm {fmt(figures['warm_s'], 'ms', 1000, 4)}")
    if "gguf_conversion" in results:
        conversion = results["gguf_conversion"]
        lines.append(f"  GGUF -> safetensors, once per machine: {fmt(conversion['seconds'], 's')}")
    lines += ["", "Embeddings (all-MiniLM-L6-v2, runner path)"]
    for name, stats in results["embeddings"].items():
        lines.append(f"  {name:30} {fmt(stats, 'texts/s')}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--skip-conversion", action="store_true")
    parser.add_argument("--conversion-repeats", type=int, default=1)
    args = parser.parse_args()
    results = run(
        args.repeats, args.max_new_tokens, not args.skip_conversion, args.conversion_repeats
    )
    print(report(results))


if __name__ == "__main__":
    main()
