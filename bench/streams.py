"""Idle streams: one ASGI process holding many concurrent SSE streams of a prediction that
emits nothing for a while. Reported: the web process's memory per open stream, and the
delivery lag of one event appended to the log to every open stream (p50, p99, max).

Each round uses a fresh web process (a second one beside the stack's own).

    .venv/bin/python bench/streams.py [--streams 1000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, running_stack, web_server

CONNECT_CONCURRENCY = 200


def _slow_prediction(stack: Stack) -> str:
    body = {"model": "echo", "input": {"prompt": "a b c", "tokens_per_second": 0.01}}
    headers = {"Authorization": f"Bearer {stack.token}"}
    response = httpx.post(f"{stack.base_url}/api/v1/predictions", json=body, headers=headers)
    return response.raise_for_status().json()["id"]


@dataclass
class Tally:
    arrivals: list[float] = field(default_factory=list)
    settled: int = 0  # streams that opened or were refused: the opener waits for these
    # Streams that got the log's first event: watching it, idle from then on. The marker
    # waits for all of them, so the lag is delivery to idle streams, not stream setup.
    watching: int = 0
    refused: list[str] = field(default_factory=list)  # error status or exception name


class _Stream(asyncio.Protocol):
    """One SSE stream on a raw connection, as a protocol: each read is handled in the
    event loop's callback, with no task to wake. Not httpx, nor asyncio streams: parsing
    5000 streams' events through them cost the load generator more CPU per event than the
    server spent, and the lag reported that as the server's."""

    def __init__(self, request: bytes, tally: Tally) -> None:
        self.request = request
        self.tally = tally
        self.status: bytes | None = None
        self.seen = b""  # the last bytes read: a marker may straddle two reads
        self.watching = False
        self.ended = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.Transport) -> None:
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.ended.done():
            return
        self.seen = self.seen[-16:] + data
        if self.status is None:
            if b"\r\n" not in self.seen:
                return
            self.status = self.seen.split(b"\r\n", 1)[0]
            self.tally.settled += 1
            code = self.status.split()
            if len(code) < 2 or code[1] != b"200":
                self._end(code[1].decode() if len(code) > 1 else "no response")
                return
        if b"event: log" in self.seen:
            self.tally.arrivals.append(time.perf_counter())
            self.ended.set_result(None)
            return
        if not self.watching and b"\nevent: " in self.seen:
            self.watching = True
            self.tally.watching += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.status is None:
            self.tally.settled += 1
        self._end(type(exc).__name__ if exc else "closed early")

    def _end(self, refusal: str) -> None:
        if not self.ended.done():
            self.tally.refused.append(refusal)
            self.ended.set_result(None)


async def _watch(base_url: str, path: str, token: str, tally: Tally) -> asyncio.Transport | None:
    """Opens one stream; its protocol records the marker's arrival and leaves the stream
    open, as a client watching a prediction would (`_hold_streams` closes them all after).
    A refused or broken stream is counted, not raised: how many the server holds is itself
    a figure, and one failure must not hide the others' numbers."""
    address = urlsplit(base_url)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    try:
        transport, stream = await loop.create_connection(
            lambda: _Stream(request, tally), address.hostname, address.port
        )
    except OSError as error:
        tally.settled += 1
        tally.refused.append(type(error).__name__)
        return None
    await stream.ended
    return transport


def _append_marker(stack: Stack, prediction_id: str) -> float:
    os.environ.update(stack.env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from inference import events

    sent = time.perf_counter()
    events.append(prediction_id, "log", "marker")
    return sent


def _cancel(stack: Stack, prediction_id: str) -> None:
    """The slow prediction would hold a worker slot for minutes after the round."""
    headers = {"Authorization": f"Bearer {stack.token}"}
    url = f"{stack.base_url}/api/v1/predictions/{prediction_id}/cancel"
    # Generous: the web process may still be closing thousands of streams.
    httpx.post(url, headers=headers, timeout=120).raise_for_status()


async def measure(stack: Stack, streams: int) -> dict:
    prediction_id = _slow_prediction(stack)
    try:
        return await _hold_streams(stack, prediction_id, streams)
    finally:
        await asyncio.to_thread(_cancel, stack, prediction_id)


async def _hold_streams(stack: Stack, prediction_id: str, streams: int) -> dict:
    url = f"/api/v1/predictions/{prediction_id}/stream"
    web = psutil.Process(stack.web_pid)
    before = web.memory_info().rss
    tally = Tally()
    tasks = []
    opening = time.perf_counter()
    for start in range(0, streams, CONNECT_CONCURRENCY):
        batch = min(CONNECT_CONCURRENCY, streams - start)
        tasks += [
            asyncio.create_task(_watch(stack.base_url, url, stack.token, tally))
            for _ in range(batch)
        ]
        while tally.settled < start + batch:
            await asyncio.sleep(0.05)
    opened = time.perf_counter()
    # Response headers of every stream, in batches: how fast the process opens streams.
    opens_per_second = streams / (opened - opening)
    while tally.watching < streams - len(tally.refused):
        await asyncio.sleep(0.05)
    setup_seconds = time.perf_counter() - opened
    await asyncio.sleep(2)
    held = web.memory_info().rss
    threads = web.num_threads()
    sent = await asyncio.to_thread(_append_marker, stack, prediction_id)
    transports = await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    # Closed only once every stream has the marker: a stream that hangs up as soon as it
    # has it would make the server tear it down while it still writes to the others.
    for transport in transports:
        if transport is not None:
            transport.close()
    lags = sorted((arrival - sent) * 1000 for arrival in tally.arrivals) or [math.nan]
    result = {
        "streams": streams,
        "delivered": len(tally.arrivals),
        "refused": len(tally.refused),
        "kib_per_stream": (held - before) / max(1, streams - len(tally.refused)) / 1024,
        "lag_p50_ms": statistics.median(lags),
        "lag_p99_ms": lags[int(0.99 * (len(lags) - 1))],
        "lag_max_ms": lags[-1],
        "watching_after_s": setup_seconds,
        "web_threads": threads,
        "opens_per_second": opens_per_second,
    }
    refusals = f" ({len(tally.refused)} refused or broken: {sorted(set(tally.refused))})"
    print(
        f"{streams} idle SSE streams{refusals if tally.refused else ''}: "
        f"{result['kib_per_stream']:.1f} KiB per stream; "
        f"delivery lag p50 {result['lag_p50_ms']:.1f} ms, p99 {result['lag_p99_ms']:.1f} ms, "
        f"max {result['lag_max_ms']:.1f} ms; opened at {opens_per_second:.0f}/s, all watching "
        f"{setup_seconds:.1f} s after the last one opened; {threads} threads in the web process",
        flush=True,
    )
    return result


def measure_round(stack: Stack, streams: int) -> dict:
    """One round; `stack` should be a fresh web process (see `web_server`)."""
    return asyncio.run(measure(stack, streams))


def run(streams: int = 1000, rounds: int = 1) -> list[dict]:
    with running_stack() as stack:
        results = []
        for _ in range(rounds):
            # A fresh web process per round: one that already held streams keeps its
            # freed memory, and the next round's growth would read as almost nothing.
            with web_server(stack) as fresh:
                results.append(measure_round(fresh, streams))
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    run(args.streams, args.rounds)


if __name__ == "__main__":
    main()
