"""The process-wide Redis connection pool for events, rate limits and worker presence."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

RETRY_BASE_SECONDS = 0.05
RETRY_CAP_SECONDS = 1.0
# Attempts spent ramping up from RETRY_BASE_SECONDS to RETRY_CAP_SECONDS (0.1 .. 0.8 s).
_RAMP_ATTEMPTS = 4


def _retry() -> Retry:
    """Retries a command until Redis is back, up to about REDIS_OUTAGE_TOLERANCE_SECONDS.

    redis-py's default gives up after about a second, so a Redis restart failed every
    running prediction (its next event append raised) and killed the worker's presence
    heartbeat. Backoff is capped at one second so a client notices recovery quickly.
    While Redis stays down, a command that has to reconnect mid-retry can wait several
    times the tolerance (redis-py also retries the connect inside a command's retry).
    """
    retries = _RAMP_ATTEMPTS + int(settings.REDIS_OUTAGE_TOLERANCE_SECONDS / RETRY_CAP_SECONDS)
    backoff = ExponentialBackoff(cap=RETRY_CAP_SECONDS, base=RETRY_BASE_SECONDS)
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
