"""Celery's Redis transport, publishing through one Redis client per channel, and the
publish of a task to it without the rest of `send_task`.

kombu's Redis channel builds a new `redis.Redis` for every command it sends, the LPUSH of
each task included: the constructor fills a table of about 170 response callbacks every
time, a quarter of the CPU of a `send_task` (0.2-0.25 of about 1 ms on a 2-core
machine), paid by the web process on every admission. Those clients all shared the
channel's connection pool; one client over that pool is as thread-safe as they were, and
kombu never uses a channel from two threads at once anyway.

Of the rest of `send_task`, the LPUSH is a fifth: routing, the queue's declaration check,
the repr of the arguments, the message's three layers of dicts and the producer's retry
wrapper are the other four, for a message that only ever differs in its ids and arguments.
`publish_task` builds that message at once (tests/portal/test_broker.py holds it to what
`send_task` sends) and pushes it over the same channel's client.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

import redis
from celery import current_app
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps
from kombu.utils.uuid import uuid


class Channel(kombu_redis.Channel):
    @cached_property
    def _commands(self) -> redis.Redis:
        return self._create_client()

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        yield client or self._commands


class Transport(kombu_redis.Transport):
    Channel = Channel


def publish_task(
    name: str, args: list[object], queue: str, *, soft_time_limit: int, time_limit: int
) -> str:
    """`current_app.send_task(name, args=args, queue=queue, soft_time_limit=...,
    time_limit=...)`, the message pushed straight onto the queue where the broker is the
    portal's Redis transport; the task's id."""
    app = current_app
    with app.producer_or_acquire() as producer:
        channel = producer.channel
        if not isinstance(channel, Channel):
            limits = {"soft_time_limit": soft_time_limit, "time_limit": time_limit}
            return app.send_task(name, args=args, queue=queue, **limits).id
        task_id = uuid()
        argsrepr = saferepr(args, app.amqp.argsrepr_maxsize, maxlevels=app.conf.task_repr_maxlevels)
        headers = _task_headers(task_id, name, argsrepr, [time_limit, soft_time_limit])
        body = [args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
        message = {
            "body": b64encode(dumps(body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                "correlation_id": task_id,
                "reply_to": app.thread_oid,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": uuid(),
            },
        }
        channel._commands.lpush(queue, dumps(message))
    return task_id


def _task_headers(
    task_id: str, name: str, argsrepr: str, timelimit: list[int]
) -> dict[str, object]:
    """Celery's task protocol 2 headers of a task sent with no options but its limits."""
    return {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": timelimit,
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": argsrepr,
        "kwargsrepr": "{}",
        "origin": anon_nodename(),
        "ignore_result": None,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
