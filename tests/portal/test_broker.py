"""Celery's Redis transport as the portal configures it (portal/broker.py): a task sent
goes to its queue as before, through one Redis client per channel instead of a new one
per command."""

from __future__ import annotations

import json
import uuid
from base64 import b64decode

import pytest
import redis
from celery import current_app

from portal.broker import Transport
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
