"""A web process from start to serving: seconds until `/readyz` answers 200, its memory
(RSS) then and after it has served a prediction, and whether torch or transformers got
loaded into it (the web tier validates and counts tokens without them).

Each round starts a fresh uvicorn process beside the stack's own (same database, Redis
and worker) and polls `/readyz` every 10 ms from the moment it is spawned.

    .venv/bin/python bench/web_start.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, free_port, running_stack, start_web, stop

POLL_SECONDS = 0.01
START_TIMEOUT_SECONDS = 60
SERVE_TIMEOUT_SECONDS = 60
# Shared objects of these libraries mapped into the process mean they were imported.
HEAVY_LIBRARIES = ("libtorch", "/transformers/", "/torch/")
MIB = 1024 * 1024


def _seconds_until_ready(base_url: str, started: float) -> float:
    deadline = started + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"{base_url}/readyz did not answer 200 in {START_TIMEOUT_SECONDS} s")


def _serve_one_prediction(base_url: str, token: str) -> None:
    # Generous waits: the stack's worker may still be busy with an earlier benchmark's run.
    body = {"model": "echo", "input": {"prompt": "hello there", "tokens_per_second": 0}}
    headers = {"Authorization": f"Bearer {token}", "Prefer": f"wait={SERVE_TIMEOUT_SECONDS}"}
    with httpx.Client(
        base_url=base_url, headers=headers, timeout=SERVE_TIMEOUT_SECONDS + 5
    ) as client:
        response = client.post("/api/v1/predictions", json=body)
        assert response.json()["status"] == "succeeded", response.text
        chat = {"model": "echo", "messages": [{"role": "user", "content": "hello"}]}
        client.post("/v1/chat/completions", json=chat).raise_for_status()


def _heavy_libraries_loaded(process: psutil.Process) -> bool:
    paths = {mapping.path for mapping in process.memory_maps(grouped=True)}
    return any(marker in path for path in paths for marker in HEAVY_LIBRARIES)


def measure_round(stack: Stack) -> dict[str, float]:
    port = free_port()
    started = time.monotonic()
    web = start_web(stack.env, port)
    try:
        base_url = f"http://127.0.0.1:{port}"
        ready_seconds = _seconds_until_ready(base_url, started)
        process = psutil.Process(web.pid)
        rss_ready = process.memory_info().rss / MIB
        _serve_one_prediction(base_url, stack.token)
        return {
            "ready_seconds": ready_seconds,
            "rss_ready_mib": rss_ready,
            "rss_served_mib": process.memory_info().rss / MIB,
            "heavy_loaded": float(_heavy_libraries_loaded(process)),
        }
    finally:
        stop([web])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with running_stack() as stack:
        for _ in range(args.rounds):
            result = measure_round(stack)
            print(
                f"/readyz 200 after {result['ready_seconds']:.2f} s; RSS "
                f"{result['rss_ready_mib']:.0f} MiB ready, {result['rss_served_mib']:.0f} MiB "
                f"after a prediction; torch/transformers loaded: {bool(result['heavy_loaded'])}"
            )


if __name__ == "__main__":
    main()
