"""Which queues have a live worker: workers heartbeat into Redis, admission asks.

Each worker process keeps a score (its expiry time) in one sorted set per queue it
consumes. A worker that dies simply stops renewing and drops out after the TTL.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import suppress

import redis
from celery.signals import worker_ready, worker_shutdown

from portal.redis_client import sync_client

logger = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5
PRESENCE_TTL_SECONDS = 20


def _key(queue: str) -> str:
    return f"workers:queue:{queue}"


def announce(hostname: str, queues: list[str]) -> None:
    expires = time.time() + PRESENCE_TTL_SECONDS
    with sync_client().pipeline() as pipe:
        for queue in queues:
            pipe.zadd(_key(queue), {hostname: expires})
        pipe.execute()


def withdraw(hostname: str, queues: list[str]) -> None:
    with sync_client().pipeline() as pipe:
        for queue in queues:
            pipe.zrem(_key(queue), hostname)
        pipe.execute()


def queue_has_worker(queue: str) -> bool:
    return sync_client().zcount(_key(queue), time.time(), "+inf") > 0


def _consumed_queues(sender) -> list[str]:
    return sorted(sender.app.amqp.queues.consume_from.keys())


_stop = threading.Event()


@worker_ready.connect
def _start_heartbeat(sender, **kwargs) -> None:
    hostname, queues = sender.hostname, _consumed_queues(sender)

    def beat() -> None:
        while not _stop.is_set():
            try:
                announce(hostname, queues)
            except redis.RedisError:
                # Redis down longer than the client's retries: keep beating, or this
                # live worker would stay invisible to admission after Redis is back.
                logger.warning("worker presence heartbeat failed; retrying", exc_info=True)
            _stop.wait(HEARTBEAT_SECONDS)

    threading.Thread(target=beat, name="presence-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat(sender, **kwargs) -> None:
    _stop.set()
    # Redis may be going down with us (Ctrl-C of the whole stack): the entry expires.
    with suppress(redis.ConnectionError):
        withdraw(sender.hostname, _consumed_queues(sender))
