"""The prediction spine end to end: HTTP API -> Celery worker -> Redis Stream -> SSE/WS."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest
import websockets
import websockets.sync.client as ws_client
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing.websocket import WebsocketCommunicator
from django.db import connection

from inference.consumers import CLOSE_NOT_FOUND
from inference.models import Prediction
from models_hub.demo import load_demo_catalog
from portal.channels_auth import PrincipalMiddlewareStack
from portal.routing import websocket_urlpatterns
from tests.integration.faults import parse_sse
from tests.livestack import free_port, start_web, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ECHO_PROMPT = "one two three four five six seven eight"


@pytest.fixture
def catalog(db):
    return {listing.slug: listing for listing in load_demo_catalog()}


@pytest.fixture
def api(stack, org, token_for, catalog):
    token = token_for(org)
    with httpx.Client(
        base_url=stack.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        client.token = token
        yield client


def create(api, model="echo", **input_):
    response = api.post("/api/v1/predictions", json={"model": model, "input": input_})
    assert response.status_code == 201, response.text
    return response.json()


def read_sse(api, url: str, headers: dict | None = None, stop_after: int | None = None):
    """Parses an SSE response into (seq, type, data) tuples until `done` or `stop_after`."""
    received = []
    with api.stream("GET", url, headers=headers or {}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in parse_sse(response.iter_lines()):
            received.append((event.seq, event.type, event.data))
            if event.type == "done" or (stop_after and len(received) >= stop_after):
                return received
    return received


def ws_refusal(url: str, headers: dict) -> tuple[str, int]:
    """How the server turned a WebSocket away: ("http", status) for a handshake refused
    before accept, ("close", code) for a socket closed after it."""
    try:
        with ws_client.connect(url, additional_headers=headers) as ws:
            ws.recv(timeout=10)
    except websockets.exceptions.InvalidStatus as exc:
        return "http", exc.response.status_code
    except websockets.exceptions.ConnectionClosed as exc:
        return "close", exc.rcvd.code if exc.rcvd else 1006
    raise AssertionError(f"{url} sent a message instead of refusing")


@async_to_sync
async def consumer_refusal(path: str, token: str) -> tuple[bool, int | None]:
    """The consumer's own answer, in process: whether it accepted, and the close code it
    sent. A close before accept reaches clients of uvicorn as a bare HTTP 403."""
    application = PrincipalMiddlewareStack(URLRouter(websocket_urlpatterns))
    headers = [(b"authorization", f"Bearer {token}".encode())]
    return await WebsocketCommunicator(application, path, headers=headers).connect()


def test_echo_streams_over_sse_and_done_matches_get(api):
    prediction = create(api, prompt=ECHO_PROMPT)
    events = read_sse(api, f"/api/v1/predictions/{prediction['id']}/stream")
    seqs = [seq for seq, _, _ in events]
    assert seqs == list(range(1, len(seqs) + 1))
    deltas = [data for _, kind, data in events if kind == "output"]
    assert len(deltas) > 1
    done = events[-1][2]
    fetched = api.get(f"/api/v1/predictions/{prediction['id']}").json()
    assert done["status"] == fetched["status"] == "succeeded"
    assert done["output"] == fetched["output"] == "".join(deltas)
    assert fetched["metrics"]["output_tokens"] > 0
    assert fetched["metrics"]["queue_time"] is not None


def test_websocket_streams_the_same_events_and_closes_1000(stack, api):
    prediction = create(api, prompt=ECHO_PROMPT)
    url = f"{stack.ws_url}/ws/predictions/{prediction['id']}/"
    messages = []
    with ws_client.connect(url, additional_headers={"Authorization": f"Bearer {api.token}"}) as ws:
        try:
            while True:
                messages.append(json.loads(ws.recv(timeout=30)))
        except websockets.exceptions.ConnectionClosedOK as closed:
            assert closed.rcvd.code == 1000
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert messages[-1]["type"] == "done"
    output = "".join(m["data"] for m in messages if m["type"] == "output")
    assert output == messages[-1]["data"]["output"]


def test_late_join_replays_everything_and_resume_has_no_gap(api):
    prediction = create(api, prompt=ECHO_PROMPT)
    url = f"/api/v1/predictions/{prediction['id']}/stream"
    full = read_sse(api, url)
    assert full[-1][1] == "done"
    # After completion: everything again.
    assert read_sse(api, url) == full
    middle = full[len(full) // 2][0]
    for resumed in (
        read_sse(api, url, headers={"Last-Event-ID": str(middle)}),
        read_sse(api, f"{url}?from={middle}"),
    ):
        assert resumed == [e for e in full if e[0] > middle]


def test_a_resume_at_or_after_done_ends_at_once(stack, api):
    """A client that already has `done` (or asks beyond it) gets nothing more, and the
    stream ends instead of sending keep-alives until it times out."""
    prediction = create(api, prompt=ECHO_PROMPT)
    url = f"/api/v1/predictions/{prediction['id']}/stream"
    done = read_sse(api, url)[-1][0]
    for after in (done, done + 10):
        started = time.monotonic()
        assert read_sse(api, url, headers={"Last-Event-ID": str(after)}) == []
        assert read_sse(api, f"{url}?from={after}") == []
        ws_url = f"{stack.ws_url}/ws/predictions/{prediction['id']}/?from={after}"
        headers = {"Authorization": f"Bearer {api.token}"}
        with (
            ws_client.connect(ws_url, additional_headers=headers) as ws,
            pytest.raises(websockets.exceptions.ConnectionClosedOK) as closed,
        ):
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1000
        assert time.monotonic() - started < 5


def test_reconnect_mid_stream_continues_exactly_once(api):
    prediction = create(api, prompt=" ".join(["word"] * 40), tokens_per_second=40)
    url = f"/api/v1/predictions/{prediction['id']}/stream"
    first = read_sse(api, url, stop_after=5)
    rest = read_sse(api, url, headers={"Last-Event-ID": str(first[-1][0])})
    combined = first + rest
    assert [e[0] for e in combined] == list(range(1, len(combined) + 1))
    assert combined[-1][1] == "done"


def test_prefer_wait_returns_the_terminal_prediction(api):
    response = api.post(
        "/api/v1/predictions",
        json={"model": "echo", "input": {"prompt": "hello there"}},
        headers={"Prefer": "wait=30"},
    )
    assert response.status_code == 201
    assert response.json()["status"] == "succeeded"
    assert response.json()["output"] == "hello there"


def test_cancel_mid_stream_keeps_partial_output(api):
    prediction = create(api, prompt=" ".join(["word"] * 200), tokens_per_second=50)
    url = f"/api/v1/predictions/{prediction['id']}/stream"
    read_sse(api, url, stop_after=6)
    first = api.post(f"/api/v1/predictions/{prediction['id']}/cancel")
    assert first.status_code == 200
    events = read_sse(api, url)
    done = events[-1][2]
    assert done["status"] == "canceled"
    assert 0 < done["metrics"]["output_tokens"] < 200
    assert done["output"] and len(done["output"].split()) < 200
    # Idempotent: a second cancel returns the same terminal prediction.
    again = api.post(f"/api/v1/predictions/{prediction['id']}/cancel").json()
    assert again["status"] == "canceled" and again["output"] == done["output"]


def test_cancel_of_a_finished_prediction_changes_nothing(api):
    prediction = create(api, prompt="short")
    read_sse(api, f"/api/v1/predictions/{prediction['id']}/stream")
    response = api.post(f"/api/v1/predictions/{prediction['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"


def test_outsider_gets_404_everywhere(stack, api, outsider_org, token_for):
    prediction = create(api, prompt="secret stuff")
    theirs = token_for(outsider_org)
    headers = {"Authorization": f"Bearer {theirs}"}
    base = f"{stack.base_url}/api/v1/predictions/{prediction['id']}"
    assert httpx.get(base, headers=headers).status_code == 404
    assert httpx.post(f"{base}/cancel", headers=headers).status_code == 404
    assert httpx.get(f"{base}/stream", headers=headers).status_code == 404
    missing = httpx.get(f"{stack.base_url}/api/v1/predictions/doesnotexist", headers=headers)
    assert missing.status_code == 404
    assert httpx.get(base, headers=headers).json() == missing.json()  # the whole body
    ws_base = f"{stack.ws_url}/ws/predictions"
    refused = ws_refusal(f"{ws_base}/{prediction['id']}/", headers)
    assert refused == ws_refusal(f"{ws_base}/doesnotexist/", headers) == ("http", 403)
    refused = consumer_refusal(f"/ws/predictions/{prediction['id']}/", theirs)
    assert refused == consumer_refusal("/ws/predictions/doesnotexist/", theirs)
    assert refused == (False, CLOSE_NOT_FOUND)
    assert Prediction.objects.get(pk=prediction["id"]).status != "canceled"


def test_revoked_token_cannot_open_a_new_stream(stack, api, org, owner):
    from portal import services
    from portal.models import ApiToken

    prediction = create(api, prompt=" ".join(["word"] * 50), tokens_per_second=50)
    url = f"/api/v1/predictions/{prediction['id']}/stream"
    read_sse(api, url, stop_after=2)
    token = ApiToken.objects.get(prefix=api.token.split("_")[1])
    services.revoke_token(org, owner, token.pk)
    assert api.get(url).status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"model": "no-such-model", "input": {"prompt": "x"}}, 404),
        ({"model": "echo", "input": {"prompt": 42}}, 400),
        ({"model": "echo", "input": {}}, 400),
        ({"model": "echo", "input": "text"}, 400),
        ({"model": "echo"}, 400),
        ({}, 400),
        ({"model": "echo", "input": {"prompt": "x"}, "webhook": "ftp://example.com"}, 400),
        ({"model": "echo", "input": {"prompt": "x"}, "webhook_events_filter": ["bogus"]}, 400),
    ],
)
def test_bad_input_is_a_clear_4xx_and_queues_nothing(api, body, status):
    response = api.post("/api/v1/predictions", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]
    assert not Prediction.objects.exists()


def test_malformed_oversized_and_bad_prefer_are_rejected(api):
    assert (
        api.post(
            "/api/v1/predictions", content=b"{nope", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    # Over the route's limit (14 MiB: room for an inline image, issue #17).
    huge = {"model": "echo", "input": {"prompt": "x" * (15 * 1024 * 1024)}}
    assert api.post("/api/v1/predictions", json=huge).status_code == 413
    response = api.post(
        "/api/v1/predictions",
        json={"model": "echo", "input": {"prompt": "x"}},
        headers={"Prefer": "wait=999"},
    )
    assert response.status_code == 400
    assert not Prediction.objects.exists()


def test_list_is_org_scoped_and_filterable(api, stack, outsider_org, token_for):
    first = create(api, prompt="a")
    read_sse(api, f"/api/v1/predictions/{first['id']}/stream")
    body = api.get("/api/v1/predictions?status=succeeded").json()
    assert [p["id"] for p in body["results"]] == [first["id"]]
    assert api.get("/api/v1/predictions?status=failed").json()["results"] == []
    theirs = httpx.get(
        f"{stack.base_url}/api/v1/predictions",
        headers={"Authorization": f"Bearer {token_for(outsider_org)}"},
    ).json()
    assert theirs["results"] == []


def test_concurrent_creates_each_run_once(api):
    ids = []

    def one():
        ids.append(create(api, prompt="x y z")["id"])

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if Prediction.objects.filter(pk__in=ids, status="succeeded").count() == 8:
            break
        time.sleep(0.2)
    assert Prediction.objects.filter(pk__in=ids, status="succeeded", attempt=1).count() == 8


@pytest.mark.models
def test_smollm2_generates_over_sse_and_websocket(stack, api):
    prediction = create(
        api, "smollm2-135m-instruct", prompt="Name three colors.", max_new_tokens=12, seed=1
    )
    events = read_sse(api, f"/api/v1/predictions/{prediction['id']}/stream")
    deltas = [data for _, kind, data in events if kind == "output"]
    done = events[-1][2]
    assert done["status"] == "succeeded", done
    assert len(deltas) > 1 and "".join(deltas) == done["output"]
    assert 0 < done["metrics"]["output_tokens"] <= 12
    assert done["metrics"]["input_tokens"] > 0
    url = f"{stack.ws_url}/ws/predictions/{prediction['id']}/"
    with ws_client.connect(url, additional_headers={"Authorization": f"Bearer {api.token}"}) as ws:
        replay = []
        with pytest.raises(websockets.exceptions.ConnectionClosedOK):
            while True:
                replay.append(json.loads(ws.recv(timeout=30)))
    assert [(m["seq"], m["type"]) for m in replay] == [(e[0], e[1]) for e in events]


def test_open_streams_do_not_hold_database_connections(api, stack):
    """More open streams than the web process's database pool has connections."""
    # Two minutes of tokens: no stream ends before the cancel below.
    prediction = create(api, prompt=" ".join(["w"] * 60), tokens_per_second=0.5)
    url = f"/api/v1/predictions/{prediction['id']}/stream"
    streams = 30
    opened = threading.Barrier(streams + 1)
    finished = []

    def watch():
        with httpx.stream("GET", stack.base_url + url, headers=api.headers, timeout=60) as r:
            assert r.status_code == 200
            opened.wait(timeout=30)
            finished.append(any(line == "event: done" for line in r.iter_lines()))

    threads = [threading.Thread(target=watch) for _ in range(streams)]
    for t in threads:
        t.start()
    opened.wait(timeout=30)
    # Answered while all the streams are still open (none can end before the cancel), not
    # after the pool's checkout timeout: that ends in an error.
    assert api.get(f"/api/v1/predictions/{prediction['id']}").status_code == 200
    assert finished == []
    api.post(f"/api/v1/predictions/{prediction['id']}/cancel")
    for t in threads:
        t.join(timeout=60)
    assert finished == [True] * streams


def _sessions_opened() -> int:
    """PostgreSQL sessions ever opened to the test database (its statistics lag up to a
    second behind)."""
    time.sleep(1.5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_the_worker_keeps_its_database_sessions_across_tasks(api):
    """Celery's Django fixup closed a prefork child's connection pool around every task:
    each prediction opened two new PostgreSQL sessions (a server process each)."""

    def run_one() -> None:
        response = api.post(
            "/api/v1/predictions",
            json={"model": "echo", "input": {"prompt": "hi", "max_new_tokens": 2}},
            headers={"Prefer": "wait=30"},
        )
        assert response.json()["status"] == "succeeded", response.text

    run_one()
    before = _sessions_opened()
    for _ in range(20):
        run_one()
    assert _sessions_opened() - before < 5


def test_the_web_process_shuts_down_promptly_after_every_kind_of_stream(
    stack, org, token_for, catalog
):
    """A stream left open kept the web process from exiting on SIGTERM (the first fan-out
    was reverted for it). Every kind of stream here ends or is dropped by its client; the
    process must then exit well within a deploy's grace period."""
    port = free_port()
    web = start_web(port)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token_for(org)}"}
    wait_until(lambda: httpx.get(f"{base}/healthz").status_code == 200)
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        long = create(client, prompt=" ".join(["word"] * 400), tokens_per_second=20)
        done = create(client, prompt="short")
        read_sse(client, f"/api/v1/predictions/{done['id']}/stream")
        # Resumed at and beyond the end: both must end at once.
        for offset in (3, 999):
            read_sse(client, f"/api/v1/predictions/{done['id']}/stream?from={offset}")
        # Dropped by the client mid-stream: SSE, WebSocket and /v1.
        read_sse(client, f"/api/v1/predictions/{long['id']}/stream", stop_after=3)
        with ws_client.connect(
            f"ws://127.0.0.1:{port}/ws/predictions/{long['id']}/",
            additional_headers=headers,
        ) as socket:
            socket.recv(timeout=10)
        body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": "a b c"}]}
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            next(response.iter_lines())
    started = time.monotonic()
    os.killpg(web.pid, signal.SIGTERM)
    web.wait(timeout=15)
    assert time.monotonic() - started < 5
