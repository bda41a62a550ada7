"""The process-wide Redis connection pool for events, rate limits and worker presence."""

from __future__ import annotations

import asyncio
import weakref
from functools import lru_cache

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

RETRY_BASE_SECONDS = 0.05
RETRY_CAP_SECONDS = 1.0
# Attempts spent ramping up from RETRY_BASE_SECONDS to RETRY_CAP_SECONDS (0.1 .. 0.8 s).
_RAMP_ATTEMPTS = 4


def _backoff() -> tuple[ExponentialBackoff, int]:
    retries = _RAMP_ATTEMPTS + int(settings.REDIS_OUTAGE_TOLERANCE_SECONDS / RETRY_CAP_SECONDS)
    return ExponentialBackoff(cap=RETRY_CAP_SECONDS, base=RETRY_BASE_SECONDS), retries


def _retry() -> Retry:
    """Retries a command until Redis is back, up to about REDIS_OUTAGE_TOLERANCE_SECONDS.

    redis-py's default gives up after about a second, so a Redis restart failed every
    running prediction (its next event append raised) and killed the worker's presence
    heartbeat. Backoff is capped at one second so a client notices recovery quickly.
    While Redis stays down, a command that has to reconnect mid-retry can wait several
    times the tolerance (redis-py also retries the connect inside a command's retry).
    """
    backoff, retries = _backoff()
    return Retry(backoff, retries, supported_errors=(ConnectionError, TimeoutError))


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Blocking: every open stream runs its sync steps (middleware, lookups) in a thread of
    # its own, so thousands of streams opening at once would exceed any fixed pool; they
    # wait for a connection instead of failing with "Too many connections".
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=settings.REDIS_MAX_CONNECTIONS,
        timeout=settings.REDIS_POOL_WAIT_SECONDS,
        health_check_interval=30,
        retry=_retry(),
    )
    return redis.Redis(connection_pool=pool)


def sync_client() -> redis.Redis:
    return _client(settings.REDIS_URL)


# redis.asyncio connections belong to the event loop that opened them: one client per loop.
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def async_client() -> aioredis.Redis:
    """The running event loop's client, for middleware and views that stay on the loop
    (a sync call there would block every other request of the process)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        backoff, retries = _backoff()
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            timeout=settings.REDIS_POOL_WAIT_SECONDS,
            health_check_interval=30,
            retry=AsyncRetry(backoff, retries, supported_errors=(ConnectionError, TimeoutError)),
        )
        client = _async_clients[loop] = aioredis.Redis(connection_pool=pool)
    return client
