"""Who may watch a prediction, and the events they get from a given offset.

Every open stream (SSE, `/v1`, WebSocket) holds a `StreamGuard`: one of its org's stream
slots, renewed while open, and its caller, re-checked every few seconds so that a revoked
token or a removed member stops receiving (API.md: WebSocket close 4401).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError

from inference import concurrency, events, hub
from inference.models import Prediction
from inference.payloads import prediction_payload
from portal.auth import Principal, invalid_principals, principal_key
from portal.connections import give_back_db_connection
from portal.errors import AuthenticationFailed, InvalidInput, NotAllowed
from portal.scoping import get_for_org

logger = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15

T = TypeVar("T")


def parse_offset(raw: str | None) -> int:
    """`Last-Event-ID` / `?from=`: the last seq the client has; 0 means from the start."""
    if raw is None or raw == "":
        return 0
    if not raw.isdigit() or len(raw) > 12:
        raise InvalidInput("The stream offset must be a non-negative integer.", param="from")
    return int(raw)


def find_watchable(principal: Principal, prediction_id: str) -> Prediction:
    if not principal.has_scope("read"):
        raise NotAllowed("This token lacks the 'read' scope.", code="missing_scope")
    return get_for_org(Prediction.objects.select_related("model"), principal.org, pk=prediction_id)


watchable = sync_to_async(find_watchable)


# A stream lives for minutes; Django returns a request's database connection only when
# the response ends, so streams give theirs back as soon as their lookups are done.
release_db_connection = sync_to_async(give_back_db_connection)


def final_event_if_expired(prediction_id: str) -> events.Event | None:
    """Once the log has expired, a finished prediction is replayed from the database."""
    if events.log_exists(prediction_id):
        return None
    prediction = (
        Prediction.objects.select_related("model", "call_cost").filter(pk=prediction_id).first()
    )
    if prediction is None or not prediction.is_terminal:
        return None
    return events.Event(seq=0, type=events.TERMINAL_EVENT, data=prediction_payload(prediction))


class CredentialsRevoked(AuthenticationFailed):
    code = "credentials_revoked"


def _revoked() -> CredentialsRevoked:
    return CredentialsRevoked(
        "The credentials this stream was opened with were revoked or have expired."
    )


def acquire_slot(principal: Principal, kind: concurrency.Kind) -> concurrency.Slot:
    """For async callers, which run it in a worker thread (thread_sensitive=False): the
    plan lookup's database connection is closed before it returns, or that thread would
    keep it checked out of the pool while the wait or stream lasts, and after.

    Callers give back their request thread's connection (the token lookup's) first: a
    request holding one connection while its slot's lookup waits for a second deadlocks
    the pool once as many requests arrive at once as it has connections."""
    try:
        return concurrency.acquire(principal.org, kind)
    finally:
        give_back_db_connection()


def start_holding_slot(
    principal: Principal, kind: concurrency.Kind, start: Callable[[], T]
) -> tuple[concurrency.Slot, T]:
    """Takes one of the org's slots of `kind`, then runs `start` (what the stream or wait
    needs before it begins: admission, a lookup), all in the caller's thread: one thread
    hop for what took four (connection back, slot on another thread, `start`, connection
    back), each one a wait behind the event loop's other work. The slot is given back if
    `start` fails; the thread's database connection in any case, since what follows lasts
    minutes. Being the request's own thread, the slot's plan lookup uses the connection
    the request already holds, so no second one is ever waited for."""
    try:
        slot = concurrency.acquire(principal.org, kind)
        try:
            return slot, start()
        except BaseException:
            slot.release()
            raise
    finally:
        give_back_db_connection()


def sweep_interval() -> float:
    """How often a process renews its streams' slots and re-checks their callers."""
    return min(settings.STREAM_PRINCIPAL_RECHECK_SECONDS, concurrency.renew_every())


@dataclass(eq=False)
class StreamGuard:
    """An open stream's slot and caller. The process's `_Sweeper` renews the one and
    re-checks the other every `sweep_interval()`; once the caller is no longer valid,
    the stream's watcher fails with CredentialsRevoked at once, its undelivered events
    discarded (an idle stream is not woken to look)."""

    principal: Principal
    slot: concurrency.Slot
    interval: float = field(default_factory=sweep_interval)
    revoked: bool = False
    watcher: hub.Watcher | None = field(default=None, repr=False)

    @classmethod
    async def open(cls, principal: Principal) -> StreamGuard:
        """RateLimited (429) when the org already holds all its stream slots."""
        await release_db_connection()
        # Not thread-sensitive: it must not queue behind the request's own thread.
        slot = await sync_to_async(acquire_slot, thread_sensitive=False)(
            principal, concurrency.Kind.STREAM
        )
        return cls.holding(principal, slot)

    @classmethod
    def holding(cls, principal: Principal, slot: concurrency.Slot) -> StreamGuard:
        """The guard of a stream slot already taken (`start_holding_slot`)."""
        guard = cls(principal, slot)
        _sweeper().add(guard)
        return guard

    def watch(self, watcher: hub.Watcher) -> None:
        """The watcher of the stream's log, which a revocation fails."""
        self.watcher = watcher
        if self.revoked:
            watcher.fail(_revoked(), discard_queued=True)

    def revoke(self) -> None:
        self.revoked = True
        if self.watcher is not None:
            self.watcher.fail(_revoked(), discard_queued=True)

    async def release(self) -> None:
        """Gives the slot back; a second call (an error path after a finally) is harmless."""
        await _sweeper().release(self)


def _sweep(guards: list[StreamGuard]) -> list[StreamGuard]:
    """Renews the slots of `guards`; answers those whose caller is no longer valid."""
    concurrency.renew_all([guard.slot for guard in guards])
    try:
        invalid = invalid_principals(guard.principal for guard in guards)
    except DatabaseError:
        # Unverifiable now; and while the database is down no revocation can be written
        # either, so the streams go on and the next sweep decides.
        return []
    finally:
        give_back_db_connection()
    return [guard for guard in guards if principal_key(guard.principal) in invalid]


class _Sweeper:
    """The open streams of one event loop (a web process has one). A single task renews
    and re-checks them all every interval, in a few round trips: per stream, that work
    was a thread hop, a Redis call and a query every few seconds, which kept a process
    holding 5000 idle streams busy doing nothing else. The task ends with the last stream.

    Slots are given back in batches too: the streams that end while one batch is on its
    way to Redis go together in the next. An event that ends thousands of streams at once
    (a prediction's `done`) otherwise started a thread hop and a round trip per stream,
    whose threads took the event loop's turn from the streams still being written to."""

    def __init__(self) -> None:
        self.guards: set[StreamGuard] = set()
        self.task: asyncio.Task | None = None
        self._releasing: list[concurrency.Slot] = []
        self._released: asyncio.Future[None] | None = None
        self._releaser: asyncio.Task | None = None

    def add(self, guard: StreamGuard) -> None:
        self.guards.add(guard)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(guard.interval))

    def discard(self, guard: StreamGuard) -> None:
        self.guards.discard(guard)
        if not self.guards and self.task is not None:
            self.task.cancel()
            self.task = None

    async def release(self, guard: StreamGuard) -> None:
        """Gives `guard`'s slot back; returns once Redis has it (or gave up on it)."""
        self.discard(guard)
        if self._released is None:
            self._released = asyncio.get_running_loop().create_future()
        released = self._released
        self._releasing.append(guard.slot)
        if self._releaser is None:
            self._releaser = asyncio.get_running_loop().create_task(self._release_batches())
        # Shielded: a stream cancelled while it waits must not cancel its batch-mates'.
        await asyncio.shield(released)

    async def _release_batches(self) -> None:
        try:
            while self._releasing:
                slots, released = self._releasing, self._released
                self._releasing, self._released = [], None
                try:
                    await concurrency.arelease_all(slots)
                except Exception:
                    # The leases run out on their own; the streams must still end.
                    logger.exception("Releasing %d stream slots failed", len(slots))
                finally:
                    released.set_result(None)
        finally:
            self._releaser = None
            if self._released is not None:
                # Cancelled (the event loop is closing): the slots still queued run out
                # with their leases, and their streams must not wait for them forever.
                self._released.set_result(None)
                self._releasing, self._released = [], None

    async def _run(self, interval: float) -> None:
        sweep = sync_to_async(_sweep, thread_sensitive=False)
        while True:
            await asyncio.sleep(interval)
            guards = list(self.guards)
            try:
                revoked = await sweep(guards)
            except Exception:
                # One failed sweep (Redis down past its retries) must not end the next.
                logger.exception("Sweeping %d open streams failed", len(guards))
                continue
            for guard in revoked:
                guard.revoke()


_sweepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweeper] = (
    weakref.WeakKeyDictionary()
)


def _sweeper() -> _Sweeper:
    return _sweepers.setdefault(asyncio.get_running_loop(), _Sweeper())


def guarded_tail(
    prediction_id: str, after: int, guard: StreamGuard
) -> AsyncIterator[events.Event | None]:
    """`hub.tail` while the guard holds, CredentialsRevoked once it does not; None means
    "say keep-alive" (after KEEPALIVE_SECONDS without an event). An idle stream wakes only
    for that: 5000 idle streams woken every guard interval to look at their guard kept a
    web process busy (bench/streams.py). The tail itself, not a generator around it: the
    guard fails its watcher, so there is nothing to check per event."""
    return hub.tail(prediction_id, after, idle_seconds=KEEPALIVE_SECONDS, on_join=guard.watch)


async def replayed_final_event(prediction_id: str) -> events.Event | None:
    """The one event a stream of `prediction_id` replays once its log has expired, or
    None while the log is there to tail. Gives the caller's database connection back."""
    final = await sync_to_async(final_event_if_expired)(prediction_id)
    await release_db_connection()
    return final


async def events_after(
    prediction_id: str, after: int, guard: StreamGuard
) -> AsyncIterator[events.Event | None]:
    """Every event after `after`, live, ending with `done`; None means "say keep-alive"."""
    final = await replayed_final_event(prediction_id)
    if final is not None:
        yield final
        return
    async with aclosing(guarded_tail(prediction_id, after, guard)) as tail:
        async for event in tail:
            yield event
