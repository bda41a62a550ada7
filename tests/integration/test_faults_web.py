"""The web process dies mid-stream: the client reconnects with Last-Event-ID and gets the
rest of the events exactly once.

The guarantee: web processes are stateless; a stream lives in the prediction's event log
(Redis), not in the process that serves it, so a restarted (or another) web process
resumes a stream from any seq the client has.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from models_hub.demo import load_demo_catalog
from tests.integration.faults import (
    ResumingReader,
    SseEvent,
    WebServer,
    assert_complete_stream,
    private_env,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]
WORDS = 40
TOKENS_PER_SECOND = 10  # about 4 s of streaming: room to kill and restart mid-way


@pytest.fixture
def web(stack) -> Iterator[WebServer]:
    """A web process of our own next to the session stack's worker and Redis."""
    server = WebServer(private_env())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_web_restart_mid_stream_resumes_with_last_event_id(web, org, token_for, how):
    load_demo_catalog()
    token = token_for(org)
    prompt = " ".join(f"w{i}" for i in range(WORDS))
    response = web_post(web, token, prompt)
    seen_output = threading.Event()

    def on_event(event: SseEvent) -> None:
        if event.type == "output" and event.seq >= 5:
            seen_output.set()

    reader = ResumingReader(lambda: web.base_url, response["id"], token, on_event)
    thread = reader.start_thread(timeout=90)
    assert seen_output.wait(30), "no output streamed before the restart"
    cut_at = reader.events[-1].seq
    if how == "sigkill":
        web.kill()
    else:
        web.stop()  # graceful, but streams are cut after GRACEFUL_SECONDS
    web.start()
    thread.join(90)
    assert reader.error is None, reader.error
    assert reader.done, f"stream did not finish: {reader.events[-3:]}"
    # The first connection broke at the restart (before `done`); another got the rest.
    assert reader.connections >= 2
    final = assert_complete_stream(reader.events)
    assert final["output"] == prompt
    assert reader.events[-1].seq > cut_at


def web_post(web: WebServer, token: str, prompt: str) -> dict:
    body = {"model": "echo", "input": {"prompt": prompt, "tokens_per_second": TOKENS_PER_SECOND}}
    response = httpx.post(
        f"{web.base_url}/api/v1/predictions",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()
