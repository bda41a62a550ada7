"""Rate limits and concurrency caps in Redis, shared by every web process.

Every key starts with `rl:`, so tests (and operators) can clear them by pattern.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest

from portal.errors import RateLimited
from portal.redis_client import async_client, sync_client

# Count and first-hit expiry in one step: no window ever lives without a TTL.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""

# Every counter of one request at once, each with its first-hit expiry.
_HIT_ALL_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  if counts[i] == 1 then redis.call('EXPIRE', key, ARGV[1]) end
end
return counts
"""

# Concurrency slots: a sorted set of slot ids scored by lease expiry (Redis server time, in
# ms, so web processes with skewed clocks agree). Acquiring prunes expired leases first, so
# the slots of a process that died free themselves once their leases run out.
_ACQUIRE_SLOT_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# Extends a held lease (and the set's TTL, which always covers its longest lease).
_RENEW_SLOT_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# Many leases at once, each in its own set: KEYS[i] holds ARGV[i + 1].
_RENEW_SLOTS_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now_ms + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', key, ARGV[1])
end
return #KEYS
"""
# Bounds one script's run (Redis serves nobody else meanwhile).
RENEW_SLOTS_PER_CALL = 1000

# One IPv6 host usually holds a whole /64: counting single addresses would let it rotate.
IPV6_PREFIX = 64


def hit(name: str, limit: int, window_seconds: int = 60) -> int | None:
    """Counts one request against `name`; returns None if allowed, else seconds to wait."""
    window = int(time.time() // window_seconds)
    key = f"rl:{name}:{window}"
    count = int(sync_client().eval(_HIT_SCRIPT, 1, key, window_seconds + 1))
    return _verdict(count, limit, window, window_seconds)


async def ahit(name: str, limit: int, window_seconds: int = 60) -> int | None:
    """`hit` from the event loop."""
    window = int(time.time() // window_seconds)
    key = f"rl:{name}:{window}"
    count = int(await async_client().eval(_HIT_SCRIPT, 1, key, window_seconds + 1))
    return _verdict(count, limit, window, window_seconds)


def _verdict(count: int, limit: int, window: int, window_seconds: int) -> int | None:
    return None if count <= limit else _seconds_left(window, window_seconds)


def _seconds_left(window: int, window_seconds: int) -> int:
    return max(1, int((window + 1) * window_seconds - time.time()) + 1)


@dataclass(frozen=True)
class Limit:
    """A per-minute limit on a counter, and what a caller beyond it is told."""

    name: str
    per_minute: int
    message: str
    code: str = RateLimited.code


def enforce(limits: Sequence[Limit]) -> None:
    """Counts one request against every limit in one round trip (a call may be under
    several: its token's and its plan's); RateLimited for the first one exceeded."""
    window = int(time.time() // 60)
    keys = [f"rl:{limit.name}:{window}" for limit in limits]
    counts = sync_client().eval(_HIT_ALL_SCRIPT, len(keys), *keys, 61)
    for limit, count in zip(limits, counts, strict=True):
        if int(count) > limit.per_minute:
            raise RateLimited(limit.message, retry_after=_seconds_left(window, 60), code=limit.code)


# --- Per client IP ---------------------------------------------------------------------


def client_ip(request: HttpRequest) -> str:
    """The caller's address: REMOTE_ADDR, unless settings.TRUSTED_PROXY_COUNT says how many
    of our own proxies appended to X-Forwarded-For (anything left of those is spoofable)."""
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies > 0 and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        # Fewer hops than proxies means the header did not come through our chain.
        if len(hops) >= proxies and _valid_ip(hops[-proxies]):
            return hops[-proxies]
    return remote


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def ip_bucket(address: str) -> str:
    """The counter's name for an address: itself for IPv4, its /64 network for IPv6."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_PREFIX}", strict=False))
    return str(parsed)


def hit_ip(request: HttpRequest) -> int | None:
    """Counts the request against its client IP; None if allowed, else seconds to wait."""
    limit = settings.IP_RATE_LIMIT_PER_MINUTE
    if limit <= 0:
        return None
    return hit(_ip_counter(request), limit)


async def ahit_ip(request: HttpRequest) -> int | None:
    """`hit_ip` from the event loop."""
    limit = settings.IP_RATE_LIMIT_PER_MINUTE
    if limit <= 0:
        return None
    return await ahit(_ip_counter(request), limit)


def _ip_counter(request: HttpRequest) -> str:
    return f"ip:{ip_bucket(client_ip(request))}"


# --- Concurrency slots -------------------------------------------------------------------


def acquire_slot(key: str, limit: int, lease_seconds: float) -> str | None:
    """Takes one of `limit` slots under `key` for `lease_seconds`; its id, or None if all
    are held. The holder renews it while in use and releases it when done."""
    slot_id = uuid.uuid4().hex
    lease_ms = int(lease_seconds * 1000)
    taken = sync_client().eval(_ACQUIRE_SLOT_SCRIPT, 1, key, limit, lease_ms, slot_id)
    return slot_id if taken else None


def renew_slot(key: str, slot_id: str, lease_seconds: float) -> None:
    # Re-adds a lease that lapsed (the holder stalled past it): it is still open.
    sync_client().eval(_RENEW_SLOT_SCRIPT, 1, key, int(lease_seconds * 1000), slot_id)


def renew_slots(slots: Sequence[tuple[str, str]], lease_seconds: float) -> None:
    """`renew_slot` for many (key, slot id) pairs in few round trips."""
    lease_ms = int(lease_seconds * 1000)
    for start in range(0, len(slots), RENEW_SLOTS_PER_CALL):
        chunk = slots[start : start + RENEW_SLOTS_PER_CALL]
        keys = [key for key, _ in chunk]
        ids = [slot_id for _, slot_id in chunk]
        sync_client().eval(_RENEW_SLOTS_SCRIPT, len(keys), *keys, lease_ms, *ids)


def release_slot(key: str, slot_id: str) -> None:
    sync_client().zrem(key, slot_id)


async def arelease_slots(slots: Sequence[tuple[str, str]]) -> None:
    """`release_slot` for many (key, slot id) pairs from the event loop, in one round trip."""
    ids_by_key: dict[str, list[str]] = {}
    for key, slot_id in slots:
        ids_by_key.setdefault(key, []).append(slot_id)
    async with async_client().pipeline(transaction=False) as pipe:
        for key, ids in ids_by_key.items():
            pipe.zrem(key, *ids)
        await pipe.execute()


def held_slots(key: str) -> int:
    """Slots whose lease has not run out."""
    now_ms = int(time.time() * 1000)
    return int(sync_client().zcount(key, f"({now_ms}", "+inf"))
