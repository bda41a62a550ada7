"""Pipeline benchmark: the real stack (ASGI server, Celery worker, PostgreSQL, Redis) with
the `echo` model at full speed (tokens_per_second=0, so the model's own time is ~0).

For 1, 10 and 50 concurrent clients, each client repeatedly creates a prediction and
reads its SSE stream until `done`. Reported: completed predictions per second, and the
portal's added latency, request sent -> first `output` event received (p50, p99).
Each figure is the median of repeated rounds, with the min-max spread.

    .venv/bin/python bench/pipeline.py [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, running_stack

PROMPT = "the quick brown fox jumps over the lazy dog"
CLIENTS = (1, 10, 50)


async def one_prediction(client: httpx.AsyncClient) -> float:
    """Seconds from sending the create request to the first `output` event."""
    body = {"model": "echo", "input": {"prompt": PROMPT, "tokens_per_second": 0}}
    sent = time.perf_counter()
    response = await client.post("/api/v1/predictions", json=body)
    response.raise_for_status()
    first_output = None
    async with client.stream("GET", response.json()["urls"]["stream"]) as stream:
        async for line in stream.aiter_lines():
            if line == "event: output" and first_output is None:
                first_output = time.perf_counter() - sent
            elif line == "event: done":
                break
    return first_output if first_output is not None else float("nan")


async def round_at(stack: Stack, clients: int, seconds: float) -> tuple[float, list[float]]:
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    headers = {"Authorization": f"Bearer {stack.token}"}
    latencies: list[float] = []
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers=headers, limits=limits, timeout=120
    ) as client:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def loop() -> None:
            while time.perf_counter() < deadline:
                latencies.append(await one_prediction(client))

        await asyncio.gather(*(loop() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def measure(stack: Stack, seconds: float = 10, rounds: int = 3) -> dict[int, dict]:
    """Per client count, each figure's value in every round (one value per round)."""
    results = {}
    for clients in CLIENTS:
        throughput, p50, p99 = [], [], []
        for _ in range(rounds):
            rate, latencies = asyncio.run(round_at(stack, clients, seconds))
            throughput.append(rate)
            p50.append(percentile(latencies, 0.5) * 1000)
            p99.append(percentile(latencies, 0.99) * 1000)
        results[clients] = {"throughput": throughput, "p50_ms": p50, "p99_ms": p99}
        print(
            f"{clients:>3} clients: {summarize(throughput)} predictions/s, "
            f"first output p50 {summarize(p50)} ms, p99 {summarize(p99)} ms",
            flush=True,
        )
    return results


def run(seconds: float = 10, rounds: int = 3) -> dict[int, dict]:
    with running_stack() as stack:
        return measure(stack, seconds, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run(args.seconds, args.rounds)


if __name__ == "__main__":
    main()
