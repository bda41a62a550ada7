"""One Redis reader per web process for every watched prediction log, fanned out to local
watchers (SSE, WebSocket and `/v1` streams, `/v1` waits).

Before this, every stream opened a Redis connection of its own (five setup commands, and
redis-py reads its own package metadata for each) and blocked in XREAD on it: 5,000 idle
streams were 5,000 connections, and every event woke each reader separately. Here one
task per event loop blocks in one multi-key XREAD over all watched logs; each watcher
has its own cursor (the seq it last received) and a bounded queue.

- Exactly once, in order: the reader reads each log from the lowest cursor of its
  watchers and gives each watcher only events past its own cursor. A new watcher is
  caught up by the same reads, from its own cursor.
- Bounded: a watcher whose queue is full is paused (left out of the reads) until its
  consumer drains it; it then resumes from its cursor, so nothing is lost or repeated.
- Deterministic cleanup: a watcher exists from `join` to `leave` (`tail` pairs them in a
  `finally`). The reader wakes for a new log at once (an entry on this process's wake
  stream) and stops, closing its connection, after a whole block period with no watcher.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Callable

import redis.asyncio as aioredis
from django.conf import settings

from inference.events import TERMINAL_EVENT, Event, decode, stream_key

logger = logging.getLogger(__name__)

# A watcher holds at most this many undelivered events before it is paused.
QUEUE_LIMIT = 1000
# Entries one read takes per log: large enough for a burst of tokens, small enough that
# one log cannot delay the others for long.
READ_COUNT = 500
# How long the reader blocks when nothing comes; with no watcher left for this long it
# stops and closes its connection.
BLOCK_MILLISECONDS = 5000
REDIS_RETRY_SECONDS = 0.5
WAKE_STREAM_TTL_SECONDS = 3600
# Wake-ups and end-of-log checks of one process share these; more wait their turn.
COMMAND_CONNECTIONS = 10


class Watcher:
    """One stream's view of one prediction log: the events past its cursor, in order.

    A process holds one per open stream, most of them idle: it keeps no more than its
    queue (a list: bounded by QUEUE_LIMIT, and empty while idle), the future its
    consumer waits on, only while it waits, and one idle timer. A deque and an
    asyncio.Event (with its own deque of waiters) took 1.5 KiB per stream.

    The idle timer is armed once and moved by no event: when it fires before the
    consumer's idle period is over, it arms itself again for the rest. A timer per wait
    was made and cancelled for every event of every stream, one of the costs of writing
    an event to thousands of streams at once (bench/streams.py)."""

    __slots__ = (
        "_hub",
        "_idle_at",
        "_queued",
        "_timer",
        "_waiter",
        "error",
        "key",
        "last_seq",
        "paused",
    )

    def __init__(self, hub: Hub, key: str, after_seq: int) -> None:
        self.key = key
        self.last_seq = after_seq
        self.paused = False
        self.error: Exception | None = None
        self._hub = hub
        self._queued: list[Event] = []
        # Set while the consumer waits in `next`: resolved by an event, a failure (False)
        # or the idle timer (True).
        self._waiter: asyncio.Future[bool] | None = None
        # When the current wait becomes idle (event loop time), and the timer that says so.
        self._idle_at = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, event: Event) -> None:
        """Called by the reader for every event of the log it reads."""
        if self.paused or event.seq <= self.last_seq:
            return
        if len(self._queued) >= QUEUE_LIMIT:
            # Left out of the reads until drained; `next` resumes from `last_seq`.
            self.paused = True
            return
        self._queued.append(event)
        self.last_seq = event.seq
        self._wake(idle=False)

    def fail(self, error: Exception, *, discard_queued: bool = False) -> None:
        """Ends the watch: the consumer gets `error` after the events already queued (the
        log cannot be read), or at once with `discard_queued` (the stream's caller was
        revoked: what is queued is no longer theirs to read)."""
        self.error, self.paused = error, True
        if discard_queued:
            self._queued.clear()
        self._wake(idle=False)

    def _wake(self, idle: bool) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(idle)

    async def next(self, idle_seconds: float) -> Event | None:
        """The next event, or None after `idle_seconds` without one; raises the error
        that ended the watch (see `fail`), after the events read before it."""
        if not self._queued:
            if self.error is not None:
                raise self.error
            if await self._wait(idle_seconds):
                return None
            if self.error is not None and not self._queued:
                raise self.error
        return self._queued.pop(0)

    async def _wait(self, idle_seconds: float) -> bool:
        """Until an event or a failure (False) or `idle_seconds` without either (True)."""
        loop = asyncio.get_running_loop()
        # Set first: the reader may hand out events while the wake-up below is sent.
        self._waiter = waiter = loop.create_future()
        self._idle_at = loop.time() + idle_seconds
        if self._timer is None:
            self._timer = loop.call_at(self._idle_at, self._on_timer)
        try:
            if self.paused and self.error is None:
                self.paused = False
                self._hub.wake()
            return await waiter
        finally:
            self._waiter = None

    def _on_timer(self) -> None:
        self._timer = None
        if self._waiter is None:
            return  # not waiting: the next wait arms it again
        loop = asyncio.get_running_loop()
        if loop.time() < self._idle_at:
            self._timer = loop.call_at(self._idle_at, self._on_timer)
        else:
            self._wake(idle=True)

    def close(self) -> None:
        """Stops the idle timer (the watcher left)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Hub:
    """The watchers and the reader of one event loop (one per web process)."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[Watcher]] = {}
        self._reader: asyncio.Task | None = None
        self._reading = False
        self._wake_sent = False
        # Wake-ups and the end-of-log checks share a small pool; the reader's blocking
        # XREAD has a connection of its own.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=COMMAND_CONNECTIONS,
            timeout=settings.REDIS_POOL_WAIT_SECONDS,
        )
        self._commands = aioredis.Redis(connection_pool=pool)
        self.name = uuid.uuid4().hex
        self._wake_key = f"hub:wake:{self.name}"
        self._wake_seen = "0-0"
        self._wakes: set[asyncio.Task] = set()

    @property
    def reader_name(self) -> str:
        """The reader's connection name (CLIENT LIST shows it)."""
        return f"hub-reader-{self.name}"

    @property
    def commands(self) -> aioredis.Redis:
        return self._commands

    def watcher_count(self) -> int:
        return sum(len(watchers) for watchers in self._watchers.values())

    @property
    def reading(self) -> bool:
        return self._reader is not None

    def join(self, prediction_id: str, after_seq: int) -> Watcher:
        """A new watcher of the log, read from the next read on; `leave` must follow."""
        watcher = Watcher(self, stream_key(prediction_id), after_seq)
        self._watchers.setdefault(watcher.key, set()).add(watcher)
        self._start_or_wake()
        return watcher

    def leave(self, watcher: Watcher) -> None:
        watcher.close()
        watchers = self._watchers.get(watcher.key)
        if watchers is None:
            return
        watchers.discard(watcher)
        if not watchers:
            del self._watchers[watcher.key]

    def _start_or_wake(self) -> None:
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_forever())
        else:
            self.wake()

    def wake(self) -> None:
        """Ends the reader's current wait, so that its next read covers the watchers as
        they are now. One wake-up per wait is enough, however many watchers join during
        it (thousands of streams may open at once).

        Sent from a task of its own: the watcher that asked for it may leave (its client
        gone, its stream cancelled) while it is on its way, and the watchers that joined
        after it, counting on it, then waited out the whole block period."""
        if not self._reading or self._wake_sent:
            return
        self._wake_sent = True
        sending = asyncio.get_running_loop().create_task(self._send_wake())
        self._wakes.add(sending)  # the loop keeps only a weak reference
        sending.add_done_callback(self._wakes.discard)

    async def _send_wake(self) -> None:
        """Best effort: with Redis down the reader retries anyway."""
        try:
            async with self._commands.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {"w": 1}, maxlen=10, approximate=True)
                pipe.expire(self._wake_key, WAKE_STREAM_TTL_SECONDS)
                await pipe.execute()
        except (aioredis.ConnectionError, aioredis.TimeoutError):
            self._wake_sent = False
            logger.debug("Could not wake the stream reader; it retries on its own")

    def _cursors(self) -> dict[str, str]:
        cursors = {self._wake_key: self._wake_seen}
        for key, watchers in self._watchers.items():
            active = [watcher.last_seq for watcher in watchers if not watcher.paused]
            if active:
                cursors[key] = f"{min(active)}-0"
        return cursors

    async def _read_forever(self) -> None:
        # No socket timeout: XREAD blocks on purpose; the block time bounds each wait.
        client = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=None,
            single_connection_client=True,
            client_name=self.reader_name,
        )
        try:
            while True:
                response = await self._read_once(client)
                if response is None:
                    continue
                self._hand_out(response)
                if not response and not self._watchers:
                    return  # a whole block period without a watcher
        finally:
            self._reader = None
            await client.aclose()

    async def _read_once(self, client: aioredis.Redis) -> list | None:
        """One blocking read; None after a failure (waited out first)."""
        self._reading = True
        # The cursors below cover every watcher registered so far: a watcher that joins
        # from here on needs a new wake-up.
        self._wake_sent = False
        try:
            return await client.xread(self._cursors(), count=READ_COUNT, block=BLOCK_MILLISECONDS)
        except (aioredis.ConnectionError, aioredis.TimeoutError):
            # Redis restarting: the cursors stay where they were; read again.
            await asyncio.sleep(REDIS_RETRY_SECONDS)
        except aioredis.ResponseError as error:
            # One key that is not a stream fails the whole read: its watchers get the
            # error, every other log is read on.
            if not await self._fail_unreadable(error):
                logger.exception("Reading the prediction logs failed")
                await asyncio.sleep(REDIS_RETRY_SECONDS)
        except Exception:
            # An unexpected reply must not leave every stream of the process waiting.
            logger.exception("Reading the prediction logs failed")
            await asyncio.sleep(REDIS_RETRY_SECONDS)
        finally:
            self._reading = False
        return None

    async def _fail_unreadable(self, error: Exception) -> bool:
        """Fails the watchers of every watched key that is not a stream; False if none
        is (the error was something else)."""
        keys = list(self._watchers)
        async with self._commands.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.type(key)
            types = await pipe.execute()
        broken = [
            key for key, kind in zip(keys, types, strict=True) if kind not in (b"stream", b"none")
        ]
        for key in broken:
            for watcher in self._watchers[key]:
                watcher.fail(error)
        return bool(broken)

    def _hand_out(self, response: list) -> None:
        for raw_key, entries in response:
            key = raw_key.decode()
            if key == self._wake_key:
                self._wake_seen = entries[-1][0].decode()
                continue
            watchers = list(self._watchers.get(key, ()))
            for entry_id, fields in entries:
                event = decode(entry_id, fields)
                for watcher in watchers:
                    watcher.offer(event)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """The running event loop's hub."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found


async def _ended_by(client: aioredis.Redis, key: str, seq: int) -> bool:
    """Whether the log's terminal event is at or before `seq`: a client resuming there
    already has everything there will ever be. Unknown (Redis down) counts as not yet."""
    try:
        newest = await client.xrevrange(key, count=1)
    except (aioredis.ConnectionError, aioredis.TimeoutError):
        return False
    if not newest:
        return False
    event = decode(*newest[0])
    return event.type == TERMINAL_EVENT and event.seq <= seq


async def tail(
    prediction_id: str,
    after_seq: int,
    *,
    idle_seconds: float,
    on_join: Callable[[Watcher], None] | None = None,
) -> AsyncIterator[Event | None]:
    """Yields events after `after_seq` as they come, None after each idle period, and ends
    after the terminal event. The caller decides what an idle period means (keep-alive),
    and may end the wait early by failing the watcher it gets in `on_join`.
    Close it deterministically (`contextlib.aclosing`): its watcher lives until then."""
    shared = hub()
    key = stream_key(prediction_id)
    # Joined and left here rather than in a context manager: its generator and wrapper
    # (and the loop's weak reference to it) were 0.65 KiB of every idle stream.
    watcher = shared.join(prediction_id, after_seq)
    try:
        if on_join is not None:
            on_join(watcher)
        if after_seq and await _ended_by(shared.commands, key, after_seq):
            return
        while True:
            event = await watcher.next(idle_seconds)
            if event is None:
                # A resume beyond the log's end: its terminal event may come at a seq
                # below the one asked for, which no read past the cursor returns.
                resumed = after_seq and watcher.last_seq == after_seq
                if resumed and await _ended_by(shared.commands, key, after_seq):
                    return
            yield event
            if event is not None and event.type == TERMINAL_EVENT:
                return
    finally:
        shared.leave(watcher)
