"""Idle streams: one ASGI process holding many concurrent SSE streams of a prediction that
emits nothing for a while. Reported: the web process's memory per open stream, and the
delivery lag of one event appended to the log to every open stream (p50, p99, max).

    .venv/bin/python bench/streams.py [--streams 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, running_stack

CONNECT_CONCURRENCY = 200


def _slow_prediction(stack: Stack) -> str:
    body = {"model": "echo", "input": {"prompt": "a b c", "tokens_per_second": 0.01}}
    headers = {"Authorization": f"Bearer {stack.token}"}
    response = httpx.post(f"{stack.base_url}/api/v1/predictions", json=body, headers=headers)
    return response.raise_for_status().json()["id"]


async def _watch(client: httpx.AsyncClient, url: str, arrivals: list, opened: list) -> None:
    async with client.stream("GET", url) as stream:
        opened.append(1)
        async for line in stream.aiter_lines():
            if line == "event: log":
                arrivals.append(time.perf_counter())
                return


def _append_marker(stack: Stack, prediction_id: str) -> float:
    os.environ.update(stack.env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from inference import events

    sent = time.perf_counter()
    events.append(prediction_id, "log", "marker")
    return sent


async def measure(stack: Stack, streams: int) -> dict:
    prediction_id = _slow_prediction(stack)
    url = f"/api/v1/predictions/{prediction_id}/stream"
    web = psutil.Process(stack.web_pid)
    before = web.memory_info().rss
    arrivals: list[float] = []
    opened: list[int] = []
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers=headers, limits=limits, timeout=None
    ) as client:
        tasks = []
        for start in range(0, streams, CONNECT_CONCURRENCY):
            batch = min(CONNECT_CONCURRENCY, streams - start)
            tasks += [
                asyncio.create_task(_watch(client, url, arrivals, opened)) for _ in range(batch)
            ]
            while len(opened) < start + batch:
                await asyncio.sleep(0.05)
        await asyncio.sleep(2)
        held = web.memory_info().rss
        sent = await asyncio.to_thread(_append_marker, stack, prediction_id)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    lags = sorted((arrival - sent) * 1000 for arrival in arrivals)
    result = {
        "streams": streams,
        "kib_per_stream": (held - before) / streams / 1024,
        "lag_p50_ms": statistics.median(lags),
        "lag_p99_ms": lags[int(0.99 * (len(lags) - 1))],
        "lag_max_ms": lags[-1],
    }
    print(
        f"{streams} idle SSE streams: {result['kib_per_stream']:.1f} KiB per stream; "
        f"delivery lag p50 {result['lag_p50_ms']:.1f} ms, p99 {result['lag_p99_ms']:.1f} ms, "
        f"max {result['lag_max_ms']:.1f} ms"
    )
    return result


def run(streams: int = 1000) -> dict:
    with running_stack() as stack:
        return asyncio.run(measure(stack, streams))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    run(parser.parse_args().streams)


if __name__ == "__main__":
    main()
