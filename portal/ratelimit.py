"""Fixed-window rate limits in Redis, shared by every web process."""

from __future__ import annotations

import time

from portal.redis_client import sync_client

# Count and first-hit expiry in one step: no window ever lives without a TTL.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def hit(name: str, limit: int, window_seconds: int = 60) -> int | None:
    """Counts one request against `name`; returns None if allowed, else seconds to wait."""
    window = int(time.time() // window_seconds)
    key = f"rl:{name}:{window}"
    count = int(sync_client().eval(_HIT_SCRIPT, 1, key, window_seconds + 1))
    if count <= limit:
        return None
    return max(1, int((window + 1) * window_seconds - time.time()) + 1)
