"""WebSocket slots never leak (issue #11, item 3).

A frame the consumer cannot parse used to crash it before `disconnect` ran, so each such
socket kept one of the org's slots for an hour. On the real ASGI server: garbage frames
get an error message on a socket that stays usable, every closed socket gives its slot
back, and the slot of a socket whose process vanished expires within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import ConnectionClosed

from inference import concurrency
from inference.consumers import CLOSE_TOO_MANY_CONNECTIONS
from portal.redis_client import sync_client
from tests.livestack import ROOT, free_port, stack_env, wait_until
from tests.security.conftest import LIVE_ENV

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

STREAM_CAP = 5
SOCKETS = 60  # well over the cap
GARBAGE = ["not json{", '{"a": NaN}', '"\\ud800"', "[" * 100 + "]" * 100, "\x00"]
LEASE_SECONDS = int(LIVE_ENV["CONCURRENCY_SLOT_LEASE_SECONDS"])
SLOW_INPUT = {"prompt": " ".join(["word"] * 60), "tokens_per_second": 1}


@pytest.fixture
def socket_for(live_stack, org, token_for, capped_plan):
    capped_plan(org, waits=5, streams=STREAM_CAP)
    token = token_for(org)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=live_stack.base_url, headers=headers, timeout=30) as api:
        body = {"model": "echo", "input": SLOW_INPUT}
        prediction = api.post("/api/v1/predictions", json=body).json()

        def connect(ws_url: str = live_stack.ws_url):
            url = f"{ws_url}/ws/predictions/{prediction['id']}/"
            return ws_client.connect(url, additional_headers=headers)

        yield connect
        api.post(f"/api/v1/predictions/{prediction['id']}/cancel")


def _accepted(ws) -> bool:
    """True while the socket stays open (no close code within a moment)."""
    try:
        while True:
            message = json.loads(ws.recv(timeout=0.5))
            assert message["type"] != "error", message
    except TimeoutError:
        return True
    except ConnectionClosed as closed:
        assert closed.rcvd.code == CLOSE_TOO_MANY_CONNECTIONS
        return False


def _send_garbage(ws, frame: str | bytes) -> dict:
    """Sends one bad frame; the answer is an error message, not a dead socket."""
    ws.send(frame)
    while True:
        message = json.loads(ws.recv(timeout=10))
        if message["type"] == "error":
            return message


def test_garbage_frames_never_leak_a_slot(socket_for):
    for index in range(SOCKETS):
        with socket_for() as ws:
            frame = GARBAGE[index % len(GARBAGE)]
            error = _send_garbage(ws, frame.encode() if index % 7 == 0 else frame)
            assert error["data"]["error"]["code"] == "invalid_frame"
            # Still usable after it: a second bad frame gets its answer too.
            assert _send_garbage(ws, "{")["type"] == "error"
    with socket_for() as ws:
        assert _accepted(ws)


def _slot_key(org) -> str:
    return concurrency.slot_key(org.pk, concurrency.Kind.STREAM)


def test_a_slot_with_an_old_lease_is_pruned(socket_for, org):
    key = _slot_key(org)
    # Slots of a process that died long ago: their leases ran out.
    sync_client().zadd(key, {f"dead-{n}": 1 for n in range(STREAM_CAP)})
    with socket_for() as ws:
        assert _accepted(ws)


def test_a_killed_web_process_frees_its_slots_within_seconds(live_stack, socket_for, org):
    port = free_port()
    doomed = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=stack_env(LIVE_ENV), start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200)
        held = [socket_for(f"ws://127.0.0.1:{port}").__enter__() for _ in range(STREAM_CAP)]
        assert all(_accepted(ws) for ws in held)
        with socket_for() as ws:
            assert not _accepted(ws)  # the org is at its cap
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        killed_at = time.monotonic()

        def accepted_again() -> bool:
            with socket_for() as ws:
                return _accepted(ws)

        wait_until(accepted_again, timeout=LEASE_SECONDS + 10, interval=0.5)
        assert time.monotonic() - killed_at < LEASE_SECONDS + 10
    finally:
        if doomed.poll() is None:
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait()
