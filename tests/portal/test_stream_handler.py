"""The prediction event stream's own ASGI handler (portal/stream_handler.py): an open
stream holds no thread of the web process, and the stream route, driven through
portal.asgi as uvicorn drives it, still answers with the security headers, to a bearer
token or a browser session (read, never saved), and refuses what it refused before."""

from __future__ import annotations

import asyncio
import gc
import io
import tracemalloc
from collections.abc import AsyncIterator

import httpx
import psutil
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.sessions.models import Session
from django.http import HttpRequest
from django.urls import reverse

from billing.checkout import grant_plan
from billing.models import Plan
from inference import hub
from inference.api.stream import prediction_stream
from inference.models import Prediction, Status
from models_hub.demo import load_demo_catalog
from models_hub.models import Task
from portal import metrics
from portal.asgi import application
from portal.stream_handler import StreamASGIHandler, is_stream_scope, write_events
from tests.livestack import running_web

pytestmark = pytest.mark.django_db(transaction=True)

IDLE_STREAMS = 50
# Threads 50 more idle streams may add: none once the first streams have started the
# process's shared ones (the stream threads, the default executor's). Before this handler
# every open stream held one.
SPARE_THREADS = 4


def fetch(path: str, address: str = "198.51.100.30", **headers: str) -> httpx.Response:
    """`path` through portal.asgi, as uvicorn drives it (the whole response: streams of
    finished predictions end)."""

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=application, client=(address, 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as client:
            return await client.get(path)

    return async_to_sync(get)()


def stream_url(prediction: Prediction) -> str:
    return f"/api/v1/predictions/{prediction.id}/stream"


def _prediction(org, status: Status) -> Prediction:
    echo = next(listing for listing in load_demo_catalog() if listing.slug == "echo")
    return Prediction.objects.create(
        org=org, model=echo, input={"prompt": "hi"}, output="hi", status=status,
        input_tokens=1, output_tokens=1,
    )  # fmt: skip


@pytest.fixture
def finished(org) -> Prediction:
    """Its log expired, so its stream replays `done` from the database and ends."""
    return _prediction(org, Status.SUCCEEDED)


@pytest.fixture
def bearer(org, token_for) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(org)}"}


def session_cookie(client_for, user, org=None) -> str:
    client = client_for(user, org)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


# --- Routing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "streamed"),
    [
        ("/api/v1/predictions/abc123/stream", True),
        ("/api/v1/predictions/abc123/stream/", False),
        ("/api/v1/predictions/abc123", False),
        ("/api/v1/predictions/a/b/stream", False),
        ("/v1/predictions/abc123/stream", False),
        ("/xapi/v1/predictions/abc123/stream", False),
    ],
)
def test_only_the_stream_route_goes_to_the_stream_handler(path, streamed):
    assert is_stream_scope({"type": "http", "path": path}) is streamed
    assert is_stream_scope({"type": "websocket", "path": path}) is False


def test_the_stream_goes_to_its_handler_and_other_api_paths_do_not(monkeypatch, finished, bearer):
    import portal.asgi

    served: list[str] = []
    stream_handler = portal.asgi.stream_asgi_app

    async def recording(scope, receive, send):
        served.append(scope["path"])
        await stream_handler(scope, receive, send)

    monkeypatch.setattr(portal.asgi, "stream_asgi_app", recording)
    assert fetch(stream_url(finished), **bearer).status_code == 200
    assert fetch(f"/api/v1/predictions/{finished.id}", **bearer).status_code == 200
    assert served == [stream_url(finished)]


def test_a_stream_resolves_its_one_route_and_keeps_no_list_of_the_sites_routes():
    """An open stream holds its request for as long as it is open, and the request its
    ResolverMatch, whose `tried` lists every route matched before it: against the site's
    URLconf about sixty lists, 3 KiB of each idle stream."""
    handler = StreamASGIHandler()
    scope = {"type": "http", "method": "GET", "path": "/api/v1/predictions/abc123/stream",
             "query_string": b"", "headers": [], "client": ("198.51.100.30", 40000)}  # fmt: skip
    request, error = handler.create_request(scope, io.BytesIO())
    assert error is None
    match = handler.resolve_request(request)
    assert match.func is prediction_stream
    assert match.kwargs == {"prediction_id": "abc123"}
    # As the metrics label it, the same route the site's URLconf names.
    assert match.route == "api/v1/predictions/<str:prediction_id>/stream"
    assert reverse("prediction_stream", kwargs={"prediction_id": "abc123"}) == scope["path"]
    assert len(match.tried) <= 1


# --- What the route answers -------------------------------------------------------------


def test_a_bearer_stream_replays_with_the_security_headers(finished, bearer):
    response = fetch(stream_url(finished), **bearer)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert "event: done" in response.text and '"output": "hi"' in response.text
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "set-cookie" not in response.headers


def test_a_session_stream_reads_the_session_and_never_saves_it(
    settings, finished, teammate, org, client_for
):
    # Django's own session middleware would save this session and set its cookie again.
    settings.SESSION_SAVE_EVERY_REQUEST = True
    cookie = session_cookie(client_for, teammate, org)
    session = Session.objects.get(pk=cookie.split("=", 1)[1])
    response = fetch(stream_url(finished), Cookie=cookie)
    assert response.status_code == 200, response.text
    assert "event: done" in response.text
    assert "Cookie" in response.headers["Vary"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "set-cookie" not in response.headers
    assert Session.objects.get(pk=session.pk).expire_date == session.expire_date


def test_an_outsiders_session_gets_the_404_of_a_missing_prediction(finished, outsider, client_for):
    cookie = session_cookie(client_for, outsider)
    hidden = fetch(stream_url(finished), Cookie=cookie)
    missing = fetch("/api/v1/predictions/doesnotexist/stream", Cookie=cookie)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


def test_another_orgs_token_gets_the_404_of_a_missing_prediction(finished, outsider_org, token_for):
    theirs = {"Authorization": f"Bearer {token_for(outsider_org)}"}
    hidden = fetch(stream_url(finished), **theirs)
    missing = fetch("/api/v1/predictions/doesnotexist/stream", **theirs)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()
    assert hidden.json()["error"]["type"] == "not_found_error"


def test_anonymous_is_a_json_401(finished):
    response = fetch(stream_url(finished))
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("offset", ["-1", "abc", "9" * 20])
def test_a_bad_offset_is_a_400(finished, bearer, offset):
    by_query = fetch(f"{stream_url(finished)}?from={offset}", **bearer)
    by_header = fetch(stream_url(finished), **bearer, **{"Last-Event-ID": offset})
    for response in (by_query, by_header):
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "from"


# --- Idle streams hold no thread (the real server) -----------------------------------


@pytest.fixture
def idle(org) -> Prediction:
    """Running, but silent: its stream stays open and idle."""
    return _prediction(org, Status.PROCESSING)


@pytest.fixture
def roomy_plan(org) -> None:
    """The org may hold both rounds of idle streams at once (a closed stream's slot frees
    once the server notices the client left)."""
    plan, _ = Plan.objects.update_or_create(
        slug="many-streams",
        defaults={
            "name": "Many streams",
            "rate_limit_per_minute": 100_000,
            "tasks": [Task.TEXT_GENERATION],
            "max_concurrent_waits": 10,
            "max_concurrent_streams": 4 * IDLE_STREAMS,
        },
    )
    grant_plan(org, plan, None)


async def _open(client: httpx.AsyncClient, url: str, count: int) -> list[httpx.Response]:
    """`count` streams, open at once; each stays open until closed."""
    requests = [client.build_request("GET", url) for _ in range(count)]
    responses = await asyncio.gather(*(client.send(r, stream=True) for r in requests))
    assert [r.status_code for r in responses] == [200] * count
    return responses


async def _settled_thread_count(process: psutil.Process) -> int:
    """The process's thread count once it stopped changing (threads of streams that just
    closed are joined in the background)."""
    count = -1
    while (now := process.num_threads()) != count:
        count = now
        await asyncio.sleep(1)
    return count


@pytest.mark.integration
async def test_idle_sse_streams_hold_no_thread_of_the_web_process(bearer, idle, roomy_plan):
    with running_web() as (base_url, web):
        process = psutil.Process(web.pid)
        limits = httpx.Limits(max_connections=2 * IDLE_STREAMS)
        async with httpx.AsyncClient(
            base_url=base_url, headers=bearer, timeout=30, limits=limits
        ) as client:
            # A first round starts whatever the process starts once and keeps.
            for response in await _open(client, stream_url(idle), IDLE_STREAMS):
                await response.aclose()
            before = await _settled_thread_count(process)
            opened = await _open(client, stream_url(idle), IDLE_STREAMS)
            try:
                during = await _settled_thread_count(process)
            finally:
                for response in opened:
                    await response.aclose()
    assert during - before < SPARE_THREADS, (before, during)


# --- An open stream holds only what it needs (in-process, as uvicorn drives it) -----------

OPEN_STREAMS = 50
# What one idle stream may hold in this process beyond the server's connection: Django's
# handler kept the request, the response, two tasks and a generator between the events
# and the connection, for the stream's whole life.
PER_STREAM_BYTES = 12 * 1024


class _Connection:
    """One request as uvicorn presents it to the application: its body, then nothing
    until the client leaves."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.started = asyncio.Event()
        self.gone = asyncio.Event()
        self._requested = False

    async def receive(self) -> dict:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started.set()


def _stream_scope(path: str, headers: dict[str, str]) -> dict:
    encoded = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": encoded, "client": ("198.51.100.30", 40000),
            "server": ("testserver", 80)}  # fmt: skip


async def _watchers_settle(count: int) -> None:
    while hub.hub().watcher_count() < count:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)


async def test_an_open_stream_keeps_neither_its_request_nor_tasks_of_djangos(
    bearer, idle, roomy_plan
):
    """Between events a stream holds its connection's task, one task waiting for the
    client to leave, and its watcher: no request, no response, no extra tasks. A client
    that leaves ends its stream: the watcher goes, and the application returns."""
    path = stream_url(idle)

    def open_streams(connections: list[_Connection]) -> list[asyncio.Task]:
        return [
            asyncio.create_task(application(_stream_scope(path, bearer), c.receive, c.send))
            for c in connections
        ]

    async def opened(connections: list[_Connection], watching: int) -> None:
        await asyncio.wait_for(asyncio.gather(*(c.started.wait() for c in connections)), 30)
        await asyncio.wait_for(_watchers_settle(watching), 30)

    # A first round starts what the process starts once and keeps (the reader, the
    # sweeper, the threads and their connections, the Redis pools, Django's caches).
    first = [_Connection() for _ in range(OPEN_STREAMS)]
    first_calls = open_streams(first)
    await opened(first, OPEN_STREAMS)
    await asyncio.to_thread(metrics.flush)  # its thread's Redis client, made once
    connections = [_Connection() for _ in range(OPEN_STREAMS)]
    tasks_before = len(asyncio.all_tasks())
    gc.collect()
    tracemalloc.start()
    try:
        calls = open_streams(connections)
        await opened(connections, 2 * OPEN_STREAMS)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # By type, not isinstance: the objects include weak proxies to objects already gone.
    requests = [o for o in gc.get_objects() if issubclass(type(o), HttpRequest) and o.path == path]
    tasks_per_stream = (len(asyncio.all_tasks()) - tasks_before) / OPEN_STREAMS
    for connection in [*first, *connections]:
        connection.gone.set()
    await asyncio.wait_for(asyncio.gather(*first_calls, *calls), 30)
    assert [c.status for c in connections] == [200] * OPEN_STREAMS
    assert requests == []
    assert tasks_per_stream == 2
    assert held / OPEN_STREAMS < PER_STREAM_BYTES, held / OPEN_STREAMS
    assert hub.hub().watcher_count() == 0


async def test_a_client_that_leaves_ends_its_stream_even_if_its_cancellation_is_swallowed():
    """The writer stops the events by cancelling itself when the client leaves. Code on
    the events' way may swallow that cancellation: on Python 3.11 `asyncio.wait_for`
    (which redis-py's socket writes use, so the hub's wake-up) returns its result instead
    when what it waited for finished in the same turn. The stream then went on writing
    keep-alives to nobody, holding its org's stream slot (renewed by the sweeper) until
    the process stopped, and the server's shutdown waited for it."""
    connection = _Connection()
    await connection.receive()  # the request's body, read by the handler before
    second: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    closed = asyncio.Event()

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            yield await asyncio.wait_for(second, 60)
            yield await asyncio.wait_for(asyncio.get_running_loop().create_future(), 60)
        finally:
            closed.set()

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    writing = asyncio.create_task(write_events(events(), connection.receive, send))
    while not sent:
        await asyncio.sleep(0)
    # In one turn: the awaited chunk arrives, and the client leaves.
    second.set_result(b"second")
    connection.gone.set()
    await asyncio.wait_for(writing, 5)
    assert closed.is_set()
    assert [message.get("body") for message in sent] == [b"first"]
