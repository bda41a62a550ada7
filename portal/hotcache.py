"""In-process caches of hot rows that rarely change (plans, subscriptions, prices), kept
right across web processes by generations in Redis.

A write bumps the generation of each scope it touches (`bump`); a lookup first reads the
generations of its scopes in one round trip (`stamp`) and uses its cached row only if it
was loaded under the same stamp. That costs one Redis read instead of the queries, and
a change made by any process is seen by the next lookup in every process. A call whose
lookups span several scopes (an API call: its token, the catalog, the plans) reads them
all in one round trip (`read_once`). Money counters
are never cached here: they stay atomic in the database (ARCHITECTURE, "The spine at
speed").
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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


# The generations read by the current `read_once` block, by key.
_read: ContextVar[dict[str, bytes | None] | None] = ContextVar("hotcache_read", default=None)


def _read_generations(keys: list[str]) -> list[bytes | None]:
    return sync_client().mget(keys)


def stamp(*scopes: str) -> Stamp | None:
    """The current generations of `scopes`; None when Redis cannot say, and then nothing
    is served from (or stored in) a cache."""
    keys = [EPOCH_KEY, *map(_scope_key, scopes)]
    read = _read.get()
    try:
        if read is None:
            return tuple(_read_generations(keys))
        missing = [key for key in keys if key not in read]
        if missing:
            read.update(zip(missing, _read_generations(missing), strict=True))
        return tuple(read[key] for key in keys)
    except redis.RedisError:
        logger.warning("Cache generations unavailable; reading %s from the database", scopes)
        return None


@contextmanager
def read_once(*scopes: str) -> Iterator[None]:
    """Within the block, the generations of `scopes` are read from Redis once, on entry, and
    every `stamp` of them reuses that read (other scopes are read once too, when first
    asked for). The block's lookups then see the caches as they were when it began: a
    change made meanwhile by another process is seen by the next block, as if it had
    been made just after this one began. This process's own bumps are seen at once."""
    keys = [EPOCH_KEY, *map(_scope_key, scopes)]
    try:
        read = dict(zip(keys, _read_generations(keys), strict=True))
    except redis.RedisError:
        read = {}  # each lookup tries again on its own
    token = _read.set(read)
    try:
        yield
    finally:
        _read.reset(token)


def end_read_once() -> None:
    """From here to the end of the current `read_once` block, lookups read generations
    afresh. A call that goes on to wait (`Prefer: wait`, up to a minute) ends the memo
    first: what it looks up after the wait must not be a minute behind other processes."""
    _read.set(None)


def _set_new_generations(scopes: tuple[str, ...]) -> None:
    read = _read.get()
    if read is not None:
        for scope in scopes:
            read.pop(_scope_key(scope), None)
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
    read = _read.get()
    if read is not None:
        read.clear()
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
