"""One tenant must not break the web process for everyone (issue #11, item 2).

On the real ASGI server, with pools of 4 Redis and 4 database connections: an org holding
more `Prefer: wait` requests than the pools have connections leaves them free for everyone
else, and an org at its plan's caps gets 429 with Retry-After for the next wait or stream
(SSE, `/v1` stream, WebSocket: close 4429) while another org and anonymous callers are
served promptly.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import ConnectionClosed

from inference.consumers import CLOSE_TOO_MANY_CONNECTIONS
from tests.livestack import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# More waits than the web process has pooled connections (LIVE_ENV: 4 and 4).
WAIT_CAP = 6
STREAM_CAP = 3
# Long enough to outlast the test; every prediction is canceled at the end.
SLOW_INPUT = {"prompt": " ".join(["word"] * 60), "tokens_per_second": 1}
PROMPT_SECONDS = 8  # what "promptly" means on a loaded 2-core machine


def _client(stack, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=stack.base_url, headers=headers, timeout=60)


def _create(client: httpx.Client, wait: int | None = None, **input_) -> httpx.Response:
    headers = {"Prefer": f"wait={wait}"} if wait else {}
    body = {"model": "echo", "input": input_ or SLOW_INPUT}
    return client.post("/api/v1/predictions", json=body, headers=headers)


def _timed(call) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _cancel_all(client: httpx.Client) -> None:
    for prediction in client.get("/api/v1/predictions").json()["results"]:
        client.post(f"/api/v1/predictions/{prediction['id']}/cancel")


@pytest.fixture
def tenants(live_stack, org, outsider_org, token_for, capped_plan):
    capped_plan(org, waits=WAIT_CAP, streams=STREAM_CAP)
    mine_client = _client(live_stack, token_for(org))
    with mine_client as mine, _client(live_stack, token_for(outsider_org)) as theirs:
        mine.token = mine.headers["Authorization"].removeprefix("Bearer ")
        yield mine, theirs
        _cancel_all(mine)
        _cancel_all(theirs)


def test_waits_hold_no_pooled_connection_and_are_capped_per_org(live_stack, tenants):
    mine, theirs = tenants
    held: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda: held.append(_create(mine, wait=30)))
        for _ in range(WAIT_CAP)
    ]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(mine.get("/api/v1/predictions").json()["results"]) == WAIT_CAP, 30)

    over, _ = _timed(lambda: _create(mine, wait=30))
    assert over.status_code == 429, over.text
    assert over.json()["error"]["code"] == "too_many_concurrent_waits"
    assert int(over.headers["Retry-After"]) >= 1
    # A /v1 call that is not streamed waits for its result too: the same cap applies.
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    v1 = mine.post("/v1/chat/completions", json=chat)
    assert v1.status_code == 429, v1.text
    assert v1.json()["error"]["code"] == "too_many_concurrent_waits"
    # Refused before admission: nothing was created for either.
    assert len(mine.get("/api/v1/predictions").json()["results"]) == WAIT_CAP

    with _client(live_stack) as anonymous:
        catalog, seconds = _timed(lambda: anonymous.get("/api/v1/models"))
    assert catalog.status_code == 200, catalog.text
    assert seconds < PROMPT_SECONDS

    # Another org waits as usual (its prediction may queue behind ours on the one worker:
    # what counts here is that the web process admits and answers it).
    other, seconds = _timed(lambda: _create(theirs, wait=2, prompt="hi", tokens_per_second=0))
    assert other.status_code == 201, other.text
    assert seconds < PROMPT_SECONDS

    _cancel_all(mine)  # the held waits answer once their predictions are terminal
    for thread in threads:
        thread.join(timeout=30)
    assert [response.status_code for response in held] == [201] * WAIT_CAP


def _open_sse(client: httpx.Client, prediction_id: str):
    stream = client.stream("GET", f"/api/v1/predictions/{prediction_id}/stream")
    response = stream.__enter__()
    return stream, response


def test_streams_are_capped_per_org_across_sse_v1_and_websockets(live_stack, tenants):
    mine, theirs = tenants
    finished = _create(mine, prompt="hi", tokens_per_second=0).json()["id"]
    prediction = _create(mine).json()
    opened = [_open_sse(mine, prediction["id"]) for _ in range(STREAM_CAP)]
    try:
        assert [response.status_code for _, response in opened] == [200] * STREAM_CAP

        over = mine.get(f"/api/v1/predictions/{prediction['id']}/stream")
        assert over.status_code == 429
        assert over.json()["error"]["code"] == "too_many_concurrent_streams"
        assert int(over.headers["Retry-After"]) >= 1

        chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        v1 = mine.post("/v1/chat/completions", json=chat)
        assert v1.status_code == 429, v1.text
        assert "Retry-After" in v1.headers

        url = f"{live_stack.ws_url}/ws/predictions/{prediction['id']}/"
        auth = {"Authorization": f"Bearer {mine.token}"}
        with (
            ws_client.connect(url, additional_headers=auth) as ws,
            pytest.raises(ConnectionClosed) as closed,
        ):
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == CLOSE_TOO_MANY_CONNECTIONS

        # Another org streams as usual, promptly.
        theirs_id = _create(theirs, prompt="hi", tokens_per_second=0).json()["id"]
        started = time.monotonic()
        with theirs.stream("GET", f"/api/v1/predictions/{theirs_id}/stream") as response:
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line.startswith("event: ")]
        assert lines[-1] == "event: done"
        assert time.monotonic() - started < PROMPT_SECONDS
    finally:
        for stream, _ in opened:
            stream.__exit__(None, None, None)

    # A client that went away gave its slot back (a finished prediction's stream ends).
    def reopened() -> bool:
        return mine.get(f"/api/v1/predictions/{finished}/stream").status_code == 200

    wait_until(reopened, timeout=PROMPT_SECONDS)


def test_v1_stream_slot_is_released_when_the_stream_ends(live_stack, tenants):
    mine, _ = tenants
    chat = {
        "model": "echo",
        "messages": [{"role": "user", "content": "short"}],
        "stream": True,
        "max_tokens": 4,
    }
    for _ in range(STREAM_CAP + 2):
        with mine.stream("POST", "/v1/chat/completions", json=chat) as response:
            assert response.status_code == 200
            data = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert data[-1] == "data: [DONE]"
        assert json.loads(data[0].removeprefix("data: "))["object"] == "chat.completion.chunk"
