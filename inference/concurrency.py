"""Per-org caps on concurrent `Prefer: wait` requests and open streams (SSE, `/v1` streams,
WebSockets), from the org's plan. Each one held is a leased slot in Redis (see
`portal.ratelimit.acquire_slot`): renewed while open, released on every exit, and expired
within CONCURRENCY_SLOT_LEASE_SECONDS if its process dies.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

import redis
from django.conf import settings

from billing.plans import plan_state
from portal import ratelimit
from portal.errors import RateLimited
from portal.models import Organization

logger = logging.getLogger(__name__)

# A slot frees when some wait or stream of the org ends, which nobody can predict; a few
# seconds lets a client retry soon without spinning.
RETRY_AFTER_SECONDS = 5


class Kind(StrEnum):
    WAIT = "waits"
    STREAM = "streams"


def slot_key(org_id: int, kind: Kind) -> str:
    return f"rl:slots:{kind}:org:{org_id}"


def org_cap(org: Organization, kind: Kind) -> int:
    plan = plan_state(org).plan
    if kind == Kind.WAIT:
        return settings.MAX_CONCURRENT_WAITS_PER_ORG if plan is None else plan.max_concurrent_waits
    return settings.MAX_CONCURRENT_STREAMS_PER_ORG if plan is None else plan.max_concurrent_streams


def lease_seconds() -> float:
    return settings.CONCURRENCY_SLOT_LEASE_SECONDS


def renew_every() -> float:
    """Renewing three times per lease keeps a slot alive through one slow renewal."""
    return lease_seconds() / 3


@dataclass(frozen=True)
class Slot:
    key: str
    id: str

    def renew(self) -> None:
        try:
            ratelimit.renew_slot(self.key, self.id, lease_seconds())
        except (redis.ConnectionError, redis.TimeoutError):
            # Redis is down (the pool's retries gave up): the stream or wait is stalled
            # on it too, and the next renewal re-adds the lease once it is back.
            logger.warning("Could not renew concurrency slot %s", self.key)

    def release(self) -> None:
        try:
            ratelimit.release_slot(self.key, self.id)
        except (redis.ConnectionError, redis.TimeoutError):
            # Called on the way out, often in a `finally`: the lease runs out on its own.
            logger.warning("Could not release concurrency slot %s", self.key)


def renew_all(slots: Sequence[Slot]) -> None:
    """`Slot.renew` for every slot a process holds, in few round trips."""
    try:
        ratelimit.renew_slots([(slot.key, slot.id) for slot in slots], lease_seconds())
    except (redis.ConnectionError, redis.TimeoutError):
        logger.warning("Could not renew %d concurrency slots", len(slots))


async def arelease_all(slots: Sequence[Slot]) -> None:
    """`Slot.release` for many slots, from the event loop."""
    try:
        await ratelimit.arelease_slots([(slot.key, slot.id) for slot in slots])
    except (redis.ConnectionError, redis.TimeoutError):
        logger.warning("Could not release %d concurrency slots", len(slots))


def acquire(org: Organization, kind: Kind) -> Slot:
    """One of the org's slots of this kind; RateLimited (429) when its plan's cap is held."""
    key = slot_key(org.pk, kind)
    slot_id = ratelimit.acquire_slot(key, org_cap(org, kind), lease_seconds())
    if slot_id is None:
        raise RateLimited(
            f"Your organization already has as many concurrent {kind} open as its plan "
            "allows; retry once one has finished.",
            retry_after=RETRY_AFTER_SECONDS,
            code=f"too_many_concurrent_{kind}",
        )
    return Slot(key, slot_id)


@contextmanager
def held(org: Organization, kind: Kind) -> Iterator[Slot]:
    slot = acquire(org, kind)
    try:
        yield slot
    finally:
        slot.release()


def held_count(org_id: int, kind: Kind) -> int:
    return ratelimit.held_slots(slot_key(org_id, kind))
