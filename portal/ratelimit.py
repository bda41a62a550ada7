"""Rate limits and concurrency caps in Redis, shared by every web process.

Every key starts with `rl:`, so tests (and operators) can clear them by pattern.
"""

from __future__ import annotations

import ipaddress
import time

from django.conf import settings
from django.http import HttpRequest

from portal.redis_client import sync_client

# Count and first-hit expiry in one step: no window ever lives without a TTL.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""

# Takes a slot if fewer than ARGV[1] are held; refreshes the TTL either way, so a key
# that is in use never expires while one that leaked (a process killed mid-connection)
# is forgotten once nobody has connected for a while.
_ACQUIRE_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if count > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1
"""

# Gives a slot back; never leaves the counter below zero (the TTL may have reset it).
_RELEASE_SCRIPT = """
local count = redis.call('DECR', KEYS[1])
if count <= 0 then redis.call('DEL', KEYS[1]) end
return count
"""

# One IPv6 host usually holds a whole /64: counting single addresses would let it rotate.
IPV6_PREFIX = 64


def hit(name: str, limit: int, window_seconds: int = 60) -> int | None:
    """Counts one request against `name`; returns None if allowed, else seconds to wait."""
    window = int(time.time() // window_seconds)
    key = f"rl:{name}:{window}"
    count = int(sync_client().eval(_HIT_SCRIPT, 1, key, window_seconds + 1))
    if count <= limit:
        return None
    return max(1, int((window + 1) * window_seconds - time.time()) + 1)


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
    return hit(f"ip:{ip_bucket(client_ip(request))}", limit)


# --- Concurrent connections --------------------------------------------------------------


def ws_org_key(org_id: int) -> str:
    return f"rl:ws:org:{org_id}"


def acquire_connection(org_id: int) -> bool:
    """Takes one of the org's WebSocket slots; False when all are taken."""
    limit = settings.WS_MAX_CONNECTIONS_PER_ORG
    if limit <= 0:
        return True
    ttl = settings.WS_CONNECTION_COUNTER_TTL_SECONDS
    return bool(sync_client().eval(_ACQUIRE_SCRIPT, 1, ws_org_key(org_id), limit, ttl))


def release_connection(org_id: int) -> None:
    sync_client().eval(_RELEASE_SCRIPT, 1, ws_org_key(org_id))


def open_connections(org_id: int) -> int:
    return int(sync_client().get(ws_org_key(org_id)) or 0)
