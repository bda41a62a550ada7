"""The process-wide Redis connection pool for events, rate limits and worker presence."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, health_check_interval=30)


def sync_client() -> redis.Redis:
    return _client(settings.REDIS_URL)
