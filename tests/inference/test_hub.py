"""The per-process fan-out of prediction logs (`inference/hub.py`), on the real Redis:
one reader for every watched log, exactly once and in order per watcher, bounded queues,
and nothing left behind when the watchers go."""

from __future__ import annotations

import asyncio
import gc
import secrets
import tracemalloc
from contextlib import aclosing

import pytest

from inference import events, hub
from portal.redis_client import sync_client

# What one idle stream's tail may allocate (its task and coroutine frames included).
PER_TAIL_BYTES = 3584  # 5.4 KiB with a deque and an Event per watcher, 3.7 KiB in a context manager


@pytest.fixture
def new_id():
    made: list[str] = []

    def make() -> str:
        made.append("hub" + secrets.token_hex(8))
        return made[-1]

    yield make
    events.erase(made)


@pytest.fixture
def quick_idle(monkeypatch):
    """The reader stops after this long without a watcher (5 s in production)."""
    monkeypatch.setattr(hub, "BLOCK_MILLISECONDS", 300)


async def collect(prediction_id: str, after: int = 0, idle: float = 0.2) -> list[events.Event]:
    got = []
    async with aclosing(hub.tail(prediction_id, after, idle_seconds=idle)) as tail:
        async for event in tail:
            if event is not None:
                got.append(event)
    return got


def append_in_thread(prediction_id: str, items: list[tuple[str, object]]):
    return asyncio.to_thread(lambda: [events.append(prediction_id, t, d) for t, d in items])


def xread_connections(name_prefix: str = "") -> int:
    """Connections (named so) whose last command is XREAD: the hub's reader, and any
    stream that would read on a connection of its own."""
    clients = sync_client().client_list()
    return sum(
        1
        for client in clients
        if client.get("cmd") == "xread" and client.get("name", "").startswith(name_prefix)
    )


async def test_watchers_at_different_offsets_each_get_every_later_event_once(new_id, quick_idle):
    prediction_id = new_id()
    events.append(prediction_id, "status", {"status": "starting"})  # seq 1
    events.append(prediction_id, "output", "a")  # seq 2
    watchers = [asyncio.create_task(collect(prediction_id, after)) for after in (0, 1, 2, 0)]
    await asyncio.sleep(0.2)
    await append_in_thread(prediction_id, [("output", "b"), ("output", "c")])
    await asyncio.sleep(0.05)
    late = asyncio.create_task(collect(prediction_id, 3))  # joins mid-stream
    await asyncio.sleep(0.1)
    await append_in_thread(prediction_id, [("output", "d"), ("done", {"status": "ok"})])
    results = await asyncio.wait_for(asyncio.gather(*watchers, late), 10)

    seqs = [[event.seq for event in got] for got in results]
    assert seqs == [
        [1, 2, 3, 4, 5, 6],
        [2, 3, 4, 5, 6],
        [3, 4, 5, 6],
        [1, 2, 3, 4, 5, 6],
        [4, 5, 6],
    ]
    assert results[0][-1].type == "done"
    assert hub.hub().watcher_count() == 0


async def test_one_reader_serves_every_stream_of_the_process(new_id, quick_idle):
    ids = [new_id() for _ in range(50)]
    for prediction_id in ids:
        events.append(prediction_id, "status", {"status": "starting"})
    before = await asyncio.to_thread(xread_connections)
    watchers = [asyncio.create_task(collect(p)) for p in ids for _ in range(4)]
    await asyncio.sleep(0.5)
    assert hub.hub().watcher_count() == 200
    assert await asyncio.to_thread(xread_connections, hub.hub().reader_name) == 1
    # Nothing else of this process reads (other tests' readers may come and go).
    assert await asyncio.to_thread(xread_connections) - before <= 1
    await append_in_thread(
        ids[0], [("output", "x")]
    )  # one log moves; the others stay blocked in the same read
    for prediction_id in ids:
        await append_in_thread(prediction_id, [("done", {"status": "ok"})])
    results = await asyncio.wait_for(asyncio.gather(*watchers), 10)
    assert [len(got) for got in results] == [3] * 4 + [2] * 196


async def test_a_slow_watcher_is_paused_not_overrun_and_misses_nothing(
    new_id, quick_idle, monkeypatch
):
    monkeypatch.setattr(hub, "QUEUE_LIMIT", 10)
    prediction_id = new_id()
    events.append(prediction_id, "status", {"status": "starting"})
    shared = hub.hub()
    watcher = shared.join(prediction_id, 0)
    try:
        first = await watcher.next(1)
        await append_in_thread(prediction_id, [("output", str(i)) for i in range(95)])
        await append_in_thread(prediction_id, [("done", {"status": "ok"})])
        await asyncio.sleep(0.3)  # the reader has read everything by now
        assert watcher.paused
        assert len(watcher._queued) == hub.QUEUE_LIMIT
        got = [first]
        while got[-1].type != "done":
            event = await watcher.next(1)
            assert event is not None
            got.append(event)
    finally:
        shared.leave(watcher)
    assert [event.seq for event in got] == list(range(1, 98))


async def test_the_reader_stops_and_closes_its_connection_when_nobody_watches(new_id, quick_idle):
    prediction_id = new_id()
    task = asyncio.create_task(collect(prediction_id))
    await asyncio.sleep(0.2)
    shared = hub.hub()
    assert shared.reading and shared.watcher_count() == 1
    assert await asyncio.to_thread(xread_connections, shared.reader_name) == 1
    task.cancel()  # a client that went away mid-stream
    with pytest.raises(asyncio.CancelledError):
        await task
    assert shared.watcher_count() == 0
    await asyncio.sleep(0.8)  # past the (shortened) block period
    assert not shared.reading
    assert await asyncio.to_thread(xread_connections, shared.reader_name) == 0


async def read_at_once(prediction_id: str) -> None:
    """A new watcher of `prediction_id` gets its log within a second, not after the
    reader's block period."""
    events.append(prediction_id, "done", {"status": "ok"})
    started = asyncio.get_running_loop().time()
    got = await asyncio.wait_for(collect(prediction_id), 5)
    assert [event.type for event in got] == ["done"]
    assert asyncio.get_running_loop().time() - started < 1


async def test_a_new_watcher_is_read_at_once_not_after_the_block_period(new_id, monkeypatch):
    monkeypatch.setattr(hub, "BLOCK_MILLISECONDS", 30_000)
    waiting = asyncio.create_task(collect(new_id()))  # keeps the reader blocked
    await asyncio.sleep(0.2)
    await read_at_once(new_id())
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_watcher_that_leaves_during_its_wake_up_does_not_take_it_from_the_others(
    new_id, monkeypatch
):
    """One wake-up serves every watcher that joins during a read. The watcher that sent
    it may leave (its client gone) while it is on its way to Redis: the others must still
    be read at once, not after the block period."""
    monkeypatch.setattr(hub, "BLOCK_MILLISECONDS", 30_000)
    waiting = asyncio.create_task(collect(new_id()))  # keeps the reader blocked
    await asyncio.sleep(0.2)
    leaving = asyncio.create_task(collect(new_id()))
    await asyncio.sleep(0)  # it joined, and its wake-up is on its way
    leaving.cancel()
    await read_at_once(new_id())
    for task in (leaving, waiting):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_resume_at_or_after_done_ends_at_once(new_id, quick_idle):
    prediction_id = new_id()
    events.append(prediction_id, "output", "a")
    events.append(prediction_id, "done", {"status": "ok"})
    assert await asyncio.wait_for(collect(prediction_id, 2), 2) == []
    assert await asyncio.wait_for(collect(prediction_id, 9), 2) == []


async def test_a_key_that_is_not_a_stream_fails_its_watchers_only(new_id, quick_idle):
    healthy, broken = new_id(), new_id()
    sync_client().set(events.stream_key(broken), "not a stream")
    events.append(healthy, "status", {"status": "starting"})
    healthy_task = asyncio.create_task(collect(healthy))
    with pytest.raises(Exception, match="WRONGTYPE"):
        await asyncio.wait_for(collect(broken), 5)
    events.append(healthy, "done", {"status": "ok"})
    got = await asyncio.wait_for(healthy_task, 5)
    assert [event.seq for event in got] == [1, 2]


async def test_a_thousand_streams_opening_at_once_wake_the_reader_a_few_times(new_id, quick_idle):
    prediction_id = new_id()
    events.append(prediction_id, "status", {"status": "starting"})
    waiting = asyncio.create_task(collect(new_id()))  # the reader is blocked already
    await asyncio.sleep(0.2)
    shared = hub.hub()
    wake_key = f"hub:wake:{shared.name}"
    watchers = [asyncio.create_task(collect(prediction_id)) for _ in range(1000)]
    await asyncio.sleep(0.5)
    assert shared.watcher_count() == 1001
    info = await asyncio.to_thread(sync_client().xinfo_stream, wake_key)
    assert info["entries-added"] <= 3  # not one per stream
    await append_in_thread(prediction_id, [("done", {"status": "ok"})])
    results = await asyncio.wait_for(asyncio.gather(*watchers), 10)
    assert all([event.seq for event in got] == [1, 2] for got in results)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_an_idle_tail_holds_little_memory(new_id, quick_idle):
    """Every open stream tails its log and waits (bench/streams.py: 5000 of them in one
    process): what one tail waiting for its next event allocates must stay small. Two
    deques (the watcher's queue and an asyncio.Event's waiters) took 1.5 KiB of it on their
    own, the subscription's context manager (a generator and its wrapper) 1 KiB."""
    prediction_id = new_id()
    events.append(prediction_id, "status", {"status": "starting"})
    shared = hub.hub()
    count = 200

    async def watch(started: asyncio.Event) -> None:
        async with aclosing(hub.tail(prediction_id, 0, idle_seconds=30)) as tail:
            assert (await anext(tail)).seq == 1
            started.set()
            await anext(tail)  # idle from here on, as a stream between events

    first = shared.join(prediction_id, 0)
    try:
        await first.next(1)  # the reader and its connection exist from here on
    finally:
        shared.leave(first)
    started = [asyncio.Event() for _ in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        watches = [asyncio.create_task(watch(flag)) for flag in started]
        await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in started)), 10)
        await asyncio.sleep(0.05)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        for watch_task in watches:
            watch_task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
    assert held / count < PER_TAIL_BYTES, held / count


async def test_a_silent_log_ends_each_idle_period_with_none(new_id, quick_idle):
    """After `idle_seconds` without an event the tail yields None: streams send their
    keep-alive on it, and `/v1` waits renew their slot and check their deadline."""
    prediction_id = new_id()
    events.append(prediction_id, "status", {"status": "starting"})
    async with aclosing(hub.tail(prediction_id, 0, idle_seconds=0.2)) as tail:
        assert (await anext(tail)).seq == 1
        for _ in range(2):
            assert await asyncio.wait_for(anext(tail), 5) is None


async def test_each_event_starts_the_idle_period_again(new_id, quick_idle):
    """Events closer together than `idle_seconds` never end an idle period: the idle
    timer, armed once per watcher, moves with each wait."""
    prediction_id = new_id()
    events.append(prediction_id, "status", {"status": "starting"})
    async with aclosing(hub.tail(prediction_id, 0, idle_seconds=0.4)) as tail:
        assert (await anext(tail)).seq == 1
        for seq in range(2, 8):
            await asyncio.sleep(0.15)
            await append_in_thread(prediction_id, [("log", seq)])
            assert (await asyncio.wait_for(anext(tail), 5)).seq == seq
        assert await asyncio.wait_for(anext(tail), 5) is None


async def test_a_failure_that_discards_comes_before_the_queued_events():
    """A revoked caller gets no more events, not even those already read for them; a log
    that cannot be read any more still gives what was read before it."""
    revoked = hub.Watcher(hub.hub(), "revoked", 0)
    unreadable = hub.Watcher(hub.hub(), "unreadable", 0)
    for watcher in (revoked, unreadable):
        watcher.offer(events.Event(seq=1, type="log", data="read before"))
    revoked.fail(RuntimeError("revoked"), discard_queued=True)
    unreadable.fail(RuntimeError("unreadable"))
    with pytest.raises(RuntimeError, match="revoked"):
        await revoked.next(1)
    assert (await unreadable.next(1)).seq == 1
    with pytest.raises(RuntimeError, match="unreadable"):
        await unreadable.next(1)
