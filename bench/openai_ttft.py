"""Time to first token through `/v1/chat/completions` (stream) against the native SSE
stream of `/api/v1/predictions` for the same prompt, on the real stack.

Both go through the same admission and event log; the ratio shows what the OpenAI
layer adds. Uses the real SmolLM2 model (greedy, 1 new token is enough for the first).
Each figure is the median of repeated interleaved runs, with the min-max spread.

    .venv/bin/python bench/openai_ttft.py [--repeats 15] [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, running_stack

PROMPT = "Say hello."
DEFAULT_MODEL = "smollm2-135m-instruct"


def native_ttft(client: httpx.Client, model: str) -> float:
    sent = time.perf_counter()
    body = {"model": model, "input": {"prompt": PROMPT, "max_new_tokens": 8, "temperature": 0}}
    created = client.post("/api/v1/predictions", json=body).raise_for_status().json()
    with client.stream("GET", created["urls"]["stream"]) as stream:
        for line in stream.iter_lines():
            if line == "event: output":
                first = time.perf_counter() - sent
            elif line == "event: done":
                return first
    raise RuntimeError("stream ended without done")


def openai_ttft(client: httpx.Client, model: str) -> float:
    sent = time.perf_counter()
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 8,
        "temperature": 0,
        "stream": True,
    }
    first = None
    with client.stream("POST", "/v1/chat/completions", json=body) as stream:
        for line in stream.iter_lines():
            if first is None and '"content":"' in line and '"content":""' not in line:
                first = time.perf_counter() - sent
            if line == "data: [DONE]":
                return first
    raise RuntimeError("stream ended without [DONE]")


def run(repeats: int = 15, model: str = DEFAULT_MODEL) -> dict:
    with running_stack() as stack:
        return measure(stack, repeats, model)


def measure(stack: Stack, repeats: int = 15, model: str = DEFAULT_MODEL) -> dict:
    headers = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=stack.base_url, headers=headers, timeout=120) as client:
        native_ttft(client, model)  # warm the model in the worker
        native, compat = [], []
        for _ in range(repeats):
            native.append(native_ttft(client, model) * 1000)
            compat.append(openai_ttft(client, model) * 1000)
    ratio = statistics.median(compat) / statistics.median(native)
    for name, values in (("native SSE", native), ("/v1 stream", compat)):
        print(
            f"{name:>11}: TTFT {statistics.median(values):.1f} ms "
            f"({min(values):.1f}-{max(values):.1f})"
        )
    print(f"ratio /v1 : native = {ratio:.3f} (target < 1.05)")
    # Each interleaved pair ran under the same machine load: their ratios have a spread.
    pair_ratios = [c / n for c, n in zip(compat, native, strict=True)]
    return {"native_ms": native, "openai_ms": compat, "ratio": ratio, "pair_ratios": pair_ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    run(args.repeats, args.model)


if __name__ == "__main__":
    main()
