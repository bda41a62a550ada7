"""In-process caches of hot rows that rarely change (plans, subscriptions, prices), kept
right across web processes by generations in Redis.

A write bumps the generation of each scope it touches (`bump`); a lookup first reads the
generations of its scopes in one round trip (`stamp`) and uses its cached row only if it
was loaded under the same stamp. That costs one Redis read instead of the queries, and
a change made by any process is seen by the next lookup in every process. Money counters
are never cached here: they stay atomic in the database (ARCHITECTURE, "The spine at
speed").
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any, Generic, TypeVar

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet

from portal.redis_client import sync_client

logger = logging.getLogger(__name__)

T = TypeVar("T")
Stamp = tuple[bytes | None, ...]

KEY_PREFIX = "hot:"
# Part of every stamp: a new epoch (see `new_epoch`) retires every entry at once.
EPOCH_KEY = f"{KEY_PREFIX}epoch"


def _scope_key(scope: str) -> str:
    return f"{KEY_PREFIX}gen:{scope}"


def stamp(*scopes: str) -> Stamp | None:
    """The current generations of `scopes`; None when Redis cannot say, and then nothing
    is served from (or stored in) a cache."""
    keys = [EPOCH_KEY, *map(_scope_key, scopes)]
    try:
        return tuple(sync_client().mget(keys))
    except redis.RedisError:
        logger.warning("Cache generations unavailable; reading %s from the database", scopes)
        return None


def _set_new_generations(scopes: tuple[str, ...]) -> None:
    try:
        with sync_client().pipeline(transaction=False) as pipe:
            for scope in scopes:
                pipe.set(_scope_key(scope), uuid.uuid4().hex)
            pipe.execute()
    except redis.RedisError:
        # Other processes then keep their entries until HOT_CACHE_MAX_AGE_SECONDS.
        logger.warning("Could not bump cache generations of %s", scopes)


# The outermost atomic block of a transaction that bumped a scope. Until it ends, its
# lookups bypass the caches: they must see its own writes, and a rollback (which nobody
# is told of) would otherwise leave its rows cached under the new generation. Django
# reuses an `atomic` decorator's block, so a later transaction may bypass them too:
# slower, never stale.
_DIRTY_BLOCK = "_hotcache_dirty_block"


def _in_writing_transaction() -> bool:
    blocks = connection.atomic_blocks
    return bool(blocks) and getattr(connection, _DIRTY_BLOCK, None) is blocks[0]


def bump(*scopes: str) -> None:
    """After a write to rows under `scopes`: now, and again once the transaction commits
    (a lookup in between may have cached the old row under the first new generation)."""
    if connection.in_atomic_block:
        setattr(connection, _DIRTY_BLOCK, connection.atomic_blocks[0])
    _set_new_generations(scopes)
    transaction.on_commit(partial(_set_new_generations, scopes))


def update(queryset: QuerySet, scope: str, /, **changes: Any) -> int:
    """`queryset.update(**changes)`, bumping `scope` if a row changed: a bulk update sends
    no signal, so every one on cached rows goes through here."""
    updated = queryset.update(**changes)
    if updated:
        bump(scope)
    return updated


def new_epoch() -> None:
    """Retires every entry of every process (tests, after emptying the database)."""
    sync_client().set(EPOCH_KEY, uuid.uuid4().hex)


class HotCache(Generic[T]):
    """Values by key, each valid while its scopes' stamp is unchanged, and at most
    HOT_CACHE_MAX_AGE_SECONDS (a backstop should a bump ever be lost)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[Stamp, float, T]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, current: Stamp | None, load: Callable[[], T]) -> T:
        if current is None or _in_writing_transaction():
            return load()
        now = time.monotonic()
        entry = self._entries.get(key)
        fresh = entry is not None and now - entry[1] < settings.HOT_CACHE_MAX_AGE_SECONDS
        if fresh and entry[0] == current:
            return entry[2]
        value = load()
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # rare, and cheaper than tracking recency per hit
            self._entries[key] = (current, now, value)
        return value
