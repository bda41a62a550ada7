"""Revoked credentials end the streams they opened (issue #11, item 11).

On the real ASGI server, with STREAM_PRINCIPAL_RECHECK_SECONDS=1: a stream of a long
generation ends within a few seconds of its token being revoked (SSE: an `error` event
`credentials_revoked`; WebSocket: close 4401; `/v1`: an error chunk, and the generation is
canceled), and a browser session's stream ends once its membership is gone.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import ConnectionClosed

from inference.consumers import CLOSE_UNAUTHORIZED
from portal import services
from portal.models import ApiToken, Membership

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SLOW_INPUT = {"prompt": " ".join(["word"] * 60), "tokens_per_second": 2}
ENDS_WITHIN_SECONDS = 10  # re-check every second; generous for a loaded 2-core machine


@pytest.fixture
def setup(live_stack, org, owner, token_for, catalog):
    creator = token_for(org, name="creator")
    with httpx.Client(
        base_url=live_stack.base_url, headers={"Authorization": f"Bearer {creator}"}, timeout=30
    ) as api:
        prediction = api.post("/api/v1/predictions", json={"model": "echo", "input": SLOW_INPUT})
        assert prediction.status_code == 201, prediction.text
        yield api, prediction.json()["id"]
        api.post(f"/api/v1/predictions/{prediction.json()['id']}/cancel")


def _revoke(org, owner, plaintext: str) -> None:
    token = ApiToken.objects.get(prefix=plaintext.split("_")[1])
    services.revoke_token(org, owner, token.pk)


def _sse_until_error(response: httpx.Response, on_first_event) -> dict:
    """Reads SSE lines; calls `on_first_event` once; returns the `error` event's data."""
    kind = None
    called = False
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
            if not called:
                on_first_event()
                called = True
        elif line.startswith("data: ") and kind == "error":
            return json.loads(line.removeprefix("data: "))
        assert kind != "done", "the stream ran to the end"
    raise AssertionError("the stream ended without an error event")


def test_revoked_token_ends_its_sse_stream(live_stack, setup, org, owner, token_for):
    _, prediction_id = setup
    watcher = token_for(org, name="watcher")
    url = f"{live_stack.base_url}/api/v1/predictions/{prediction_id}/stream"
    headers = {"Authorization": f"Bearer {watcher}"}
    revoked_at = []
    with httpx.stream("GET", url, headers=headers, timeout=60) as response:
        assert response.status_code == 200

        def revoke() -> None:
            _revoke(org, owner, watcher)
            revoked_at.append(time.monotonic())

        error = _sse_until_error(response, revoke)
    assert error["error"]["code"] == "credentials_revoked"
    assert time.monotonic() - revoked_at[0] < ENDS_WITHIN_SECONDS


def test_revoked_token_closes_its_websocket_4401(live_stack, setup, org, owner, token_for):
    _, prediction_id = setup
    watcher = token_for(org, name="watcher")
    url = f"{live_stack.ws_url}/ws/predictions/{prediction_id}/"
    with ws_client.connect(url, additional_headers={"Authorization": f"Bearer {watcher}"}) as ws:
        json.loads(ws.recv(timeout=30))  # the stream is live
        _revoke(org, owner, watcher)
        revoked_at = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                assert json.loads(ws.recv(timeout=30))["type"] != "done"
    assert closed.value.rcvd.code == CLOSE_UNAUTHORIZED
    assert time.monotonic() - revoked_at < ENDS_WITHIN_SECONDS


def test_revoked_token_ends_its_v1_stream_and_the_generation(
    live_stack, setup, org, owner, token_for
):
    api, _ = setup
    caller = token_for(org, name="caller")
    body = {
        "model": "echo",
        "messages": [{"role": "user", "content": SLOW_INPUT["prompt"]}],
        "stream": True,
    }
    url = f"{live_stack.base_url}/v1/chat/completions"
    chunks = []
    with httpx.stream(
        "POST", url, json=body, headers={"Authorization": f"Bearer {caller}"}, timeout=60
    ) as response:
        assert response.status_code == 200
        revoked_at = None
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            chunks.append(line.removeprefix("data: "))
            if revoked_at is None:
                _revoke(org, owner, caller)
                revoked_at = time.monotonic()
    assert time.monotonic() - revoked_at < ENDS_WITHIN_SECONDS
    assert chunks[-1] != "[DONE]"
    assert json.loads(chunks[-1])["error"]["code"] == "credentials_revoked"
    prediction_id = json.loads(chunks[0])["id"].removeprefix("chatcmpl-")

    def canceled() -> bool:
        return api.get(f"/api/v1/predictions/{prediction_id}").json()["status"] == "canceled"

    deadline = time.monotonic() + ENDS_WITHIN_SECONDS
    while not canceled():
        assert time.monotonic() < deadline, "the revoked stream's generation still runs"
        time.sleep(0.2)


def test_removed_member_session_stream_ends(live_stack, setup, org, teammate, client_for):
    _, prediction_id = setup
    browser = client_for(teammate, org)
    cookies = {"sessionid": browser.cookies["sessionid"].value}
    url = f"{live_stack.base_url}/api/v1/predictions/{prediction_id}/stream"
    removed_at = []
    with httpx.stream("GET", url, cookies=cookies, timeout=60) as response:
        assert response.status_code == 200

        def remove() -> None:
            Membership.objects.filter(user=teammate, org=org).delete()
            removed_at.append(time.monotonic())

        error = _sse_until_error(response, remove)
    assert error["error"]["code"] == "credentials_revoked"
    assert time.monotonic() - removed_at[0] < ENDS_WITHIN_SECONDS
