"""One Redis reader per watched prediction per process, shared by every stream on it.

Without it each SSE, WebSocket and `/v1` stream holds its own Redis connection blocked in
XREAD, and one appended event wakes all of them: with thousands of clients watching one
prediction, every event costs thousands of Redis replies to parse, and the last client
hears of it seconds late. Here a `Feed` reads the prediction's log once and puts each
event on the queue of every local watcher.

A watcher that joins a running feed catches up from the log itself (XRANGE from its own
offset up to the feed's cursor at the moment it joined) and then takes the feed's events;
events it already has are skipped by seq, so it sees each event exactly once, in order.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from django.conf import settings

from inference import events

CATCH_UP_PAGE = 1000
REDIS_RETRY_SECONDS = 0.5
# A feed's blocking read returns at least this often (then reads again).
FEED_BLOCK_MILLISECONDS = 5000


class FeedFailed(RuntimeError):
    """The shared reader stopped on an unexpected error; its watchers must not wait."""


@dataclass
class Feed:
    prediction_id: str
    cursor: int  # seq of the last event handed to the watchers
    watchers: set[asyncio.Queue] = field(default_factory=set)
    task: asyncio.Task | None = None
    finished: bool = False  # the terminal event went out: nothing follows


class Hub:
    """The feeds of one event loop (one per web process in production)."""

    def __init__(self) -> None:
        self.feeds: dict[str, Feed] = {}
        # Non-blocking reads (catch-up) share one pool; each feed's blocking XREAD has a
        # connection of its own.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            timeout=settings.REDIS_POOL_WAIT_SECONDS,
        )
        self.client = aioredis.Redis(connection_pool=pool)

    def join(self, prediction_id: str, after_seq: int) -> tuple[asyncio.Queue, Feed]:
        """A queue of live events, and the feed (its cursor: where the caller's catch-up
        from the log ends)."""
        feed = self.feeds.get(prediction_id)
        if feed is None:
            feed = self.feeds[prediction_id] = Feed(prediction_id, cursor=after_seq)
            feed.task = asyncio.create_task(self._read(feed))
        queue: asyncio.Queue = asyncio.Queue()
        feed.watchers.add(queue)
        return queue, feed

    def leave(self, prediction_id: str, queue: asyncio.Queue) -> None:
        feed = self.feeds.get(prediction_id)
        if feed is None:
            return
        feed.watchers.discard(queue)
        if not feed.watchers:
            del self.feeds[prediction_id]
            if feed.task is not None:
                feed.task.cancel()

    async def _read(self, feed: Feed) -> None:
        client = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=None)
        key = events.stream_key(feed.prediction_id)
        try:
            while True:
                try:
                    response = await client.xread(
                        {key: f"{feed.cursor}-0"}, count=500, block=FEED_BLOCK_MILLISECONDS
                    )
                except (aioredis.ConnectionError, aioredis.TimeoutError):
                    # Redis restarting: wait, then go on from the last handed-out seq.
                    await asyncio.sleep(REDIS_RETRY_SECONDS)
                    continue
                if self._hand_out(feed, response):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for queue in feed.watchers:
                queue.put_nowait(FeedFailed(str(exc)))
            raise
        finally:
            await client.aclose()

    @staticmethod
    def _hand_out(feed: Feed, response: list) -> bool:
        """Gives each event to every watcher; True once the terminal event went out."""
        for entry_id, fields in response[0][1] if response else []:
            event = events.decode(entry_id, fields)
            feed.cursor = event.seq
            for queue in feed.watchers:
                queue.put_nowait(event)
            if event.type == events.TERMINAL_EVENT:
                feed.finished = True
                return True
        return False

    async def catch_up(self, prediction_id: str, after: int, until: int) -> list[events.Event]:
        """Events with after < seq <= until, read from the log."""
        found: list[events.Event] = []
        key = events.stream_key(prediction_id)
        while after < until:
            entries = await self.client.xrange(
                key, min=f"({after}-0", max=f"{until}-0", count=CATCH_UP_PAGE
            )
            if not entries:
                break
            page = [events.decode(entry_id, fields) for entry_id, fields in entries]
            found += page
            after = page[-1].seq
        return found


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found


async def _catch_up(
    shared: Hub, prediction_id: str, after: int, until: int, idle_seconds: float
) -> AsyncIterator[list[events.Event] | None]:
    """The caller's missing events, retried (with a None per wait) while Redis is down:
    skipping them would leave a gap that the live feed never fills."""
    while True:
        try:
            yield await shared.catch_up(prediction_id, after, until)
            return
        except (aioredis.ConnectionError, aioredis.TimeoutError):
            await asyncio.sleep(min(REDIS_RETRY_SECONDS, idle_seconds))
            yield None


async def watch(
    prediction_id: str, after_seq: int, *, idle_seconds: float
) -> AsyncIterator[events.Event | None]:
    """Every event after `after_seq` exactly once, None after each idle period (or wait
    for Redis), ending after the terminal event."""
    shared = hub()
    queue, feed = shared.join(prediction_id, after_seq)
    last = after_seq
    try:
        async for page in _catch_up(shared, prediction_id, last, feed.cursor, idle_seconds):
            for event in page or []:
                last = event.seq
                yield event
                if event.type == events.TERMINAL_EVENT:
                    return
            if page is None:
                yield None
        if feed.finished and last >= feed.cursor:
            return  # joined after the end, already holding everything
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), idle_seconds)
            except TimeoutError:
                yield None
                continue
            if isinstance(item, FeedFailed):
                raise item
            if item.seq <= last:
                continue
            last = item.seq
            yield item
            if item.type == events.TERMINAL_EVENT:
                return
    finally:
        shared.leave(prediction_id, queue)
