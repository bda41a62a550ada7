"""The event log's append on the real Redis, through a connection that loses a reply:
redis-py resends a command whose reply never came (Redis restarting, a dropped
connection), so an append must be written once however often it is sent."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import override_settings

from inference import events
from tests.integration.faults import TcpProxy


class ReplyLosingProxy(TcpProxy):
    """Passes every command on to Redis; once armed, hangs up instead of passing back
    the next reply: Redis ran the command, the client never hears that it did."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        super().__init__(upstream_host, upstream_port)
        self.armed = threading.Event()

    def _passes(self, src: socket.socket, data: bytes) -> bool:
        if src.getpeername()[1] != self.upstream[1] or not self.armed.is_set():
            return True
        self.armed.clear()
        return False


@pytest.fixture
def proxy() -> Iterator[ReplyLosingProxy]:
    redis_url = urlsplit(settings.REDIS_URL)
    server = ReplyLosingProxy(redis_url.hostname or "127.0.0.1", redis_url.port or 6379)
    server.start()
    yield server
    server.close()


@pytest.fixture
def new_id() -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        made.append("log" + secrets.token_hex(8))
        return made[-1]

    yield make
    events.erase(made)


def through(proxy: ReplyLosingProxy) -> str:
    redis_url = urlsplit(settings.REDIS_URL)
    return redis_url._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()


def test_an_append_whose_reply_was_lost_is_written_once(proxy, new_id):
    prediction_id = new_id()
    with override_settings(REDIS_URL=through(proxy)):
        # Connected, and the append script loaded, before the reply goes missing.
        events.append(new_id(), "status", {"status": "starting"})
        proxy.armed.set()
        seq = events.append(prediction_id, "output", "a")
        after = events.append(prediction_id, "output", "b")
    logged = [(e.seq, e.type, e.data) for e in events.read_after(prediction_id, 0)]
    assert logged == [(1, "output", "a"), (2, "output", "b")]
    assert (seq, after) == (1, 2)


def test_the_same_event_appended_twice_by_its_writer_is_two_events(new_id):
    """Only a resent command is one append: equal events are not merged."""
    prediction_id = new_id()
    assert [events.append(prediction_id, "output", "a") for _ in range(2)] == [1, 2]
    assert [e.data for e in events.read_after(prediction_id, 0)] == ["a", "a"]
