"""Celery's Redis transport as the portal configures it (portal/broker.py): a task sent
goes to its queue as before, through one Redis client per channel instead of a new one
per command; a task published without `send_task` is the message `send_task` sends."""

from __future__ import annotations

import json
import uuid
from base64 import b64decode

import pytest
import redis
from celery import Celery, current_app

from portal import broker
from portal.broker import Transport, publish_task
from portal.redis_client import sync_client


@pytest.fixture
def queue() -> str:
    name = f"test-broker-{uuid.uuid4().hex}"
    yield name
    sync_client().delete(name)


@pytest.fixture
def redis_clients_made(monkeypatch) -> list[int]:
    made: list[int] = []
    make = redis.Redis.__init__

    def counting(self, *args, **kwargs) -> None:
        made.append(1)
        make(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting)
    return made


def test_the_redis_broker_uses_the_portals_transport():
    with current_app.connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)


def test_sending_tasks_makes_no_redis_client_per_task(queue, redis_clients_made):
    # The first send may open the producer's channel and make its clients.
    current_app.send_task("portal.tests.nothing", args=[0], queue=queue)
    redis_clients_made.clear()
    for number in range(1, 6):
        current_app.send_task("portal.tests.nothing", args=[number], queue=queue)
    assert redis_clients_made == []
    assert sync_client().llen(queue) == 6


def test_a_sent_task_is_the_message_celery_workers_read(queue):
    sent = current_app.send_task("portal.tests.nothing", args=["p_1"], queue=queue)
    message = json.loads(sync_client().rpop(queue))
    assert message["headers"]["task"] == "portal.tests.nothing"
    assert message["headers"]["id"] == sent.id
    assert message["properties"]["delivery_info"]["routing_key"] == queue
    args, kwargs, _ = json.loads(b64decode(message["body"]))
    assert (args, kwargs) == (["p_1"], {})


def without_ids(raw: bytes) -> dict:
    """A queued message, its body decoded, with its fresh ids named by role."""
    message = json.loads(raw)
    message["body"] = json.loads(b64decode(message["body"]))
    task_id = message["headers"]["id"]
    for part, key in [("headers", "id"), ("headers", "root_id"), ("properties", "correlation_id")]:
        assert message[part].pop(key) == task_id
    uuid.UUID(message["properties"].pop("delivery_tag"))
    return message


def test_a_published_task_is_the_message_send_task_sends(queue):
    limits = {"soft_time_limit": 50, "time_limit": 60}
    current_app.send_task("portal.tests.nothing", args=["p_1"], queue=queue, **limits)
    task_id = publish_task("portal.tests.nothing", ["p_1"], queue, **limits)
    published, sent = sync_client().lpop(queue), sync_client().lpop(queue)
    assert json.loads(published)["headers"]["id"] == task_id
    assert without_ids(published) == without_ids(sent)
    assert without_ids(published)["headers"]["timelimit"] == [60, 50]


def test_publishing_on_another_broker_sends_the_task(monkeypatch):
    app = Celery("elsewhere", broker="memory://")
    monkeypatch.setattr(broker, "current_app", app)
    task_id = publish_task("portal.tests.nothing", ["p_1"], "q", soft_time_limit=5, time_limit=6)
    with app.connection_for_read() as connection:
        queued = connection.SimpleQueue("q").get(timeout=1)
    assert (queued.headers["id"], queued.headers["timelimit"]) == (task_id, [6, 5])
    assert queued.payload[0] == ["p_1"]
