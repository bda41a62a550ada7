"""The per-process fan-out of prediction event logs, on the real Redis."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from inference import events, fanout


@pytest.fixture
def prediction_id():
    prediction_id = "fanout" + secrets.token_hex(8)
    yield prediction_id
    events.erase([prediction_id])


async def collect(stream, count: int) -> list[events.Event]:
    got = []
    async for event in stream:
        if event is not None:
            got.append(event)
        if len(got) == count or (got and got[-1].type == events.TERMINAL_EVENT):
            return got
    return got


async def test_watchers_share_one_reader_and_each_gets_every_event_once(prediction_id):
    events.append(prediction_id, "status", {"status": "starting"})
    first = fanout.watch(prediction_id, 0, idle_seconds=0.2)
    head = await collect(first, 1)
    for word in ("a", "b", "c"):
        events.append(prediction_id, "output", word)
    # A late joiner from the start: catches up from the log, then shares the feed.
    late = fanout.watch(prediction_id, 0, idle_seconds=0.2)
    late_task = asyncio.create_task(collect(late, 10))
    first_task = asyncio.create_task(collect(first, 10))
    await asyncio.sleep(0.3)
    feed = fanout.hub().feeds[prediction_id]
    assert len(feed.watchers) == 2  # one Redis reader for both
    events.append(prediction_id, "output", "d")
    events.append(prediction_id, "done", {"status": "succeeded"})
    late_events, rest = await asyncio.wait_for(asyncio.gather(late_task, first_task), 10)

    expected = list(range(1, 7))
    assert [e.seq for e in late_events] == expected
    assert [e.seq for e in head + rest] == expected
    assert [e.data for e in late_events if e.type == "output"] == ["a", "b", "c", "d"]


async def test_resume_from_an_offset_and_after_the_end(prediction_id):
    for word in ("a", "b", "c"):
        events.append(prediction_id, "output", word)
    events.append(prediction_id, "done", {})
    resumed = await collect(fanout.watch(prediction_id, 2, idle_seconds=0.2), 10)
    assert [(e.seq, e.type) for e in resumed] == [(3, "output"), (4, "done")]

    # Someone still watching keeps the finished feed; a client that already has
    # everything ends at once instead of waiting forever.
    holder = fanout.watch(prediction_id, 0, idle_seconds=0.2)
    await collect(holder, 10)
    after_end = [e async for e in fanout.watch(prediction_id, 4, idle_seconds=0.2)]
    assert [e for e in after_end if e is not None] == []


async def test_the_last_watcher_leaving_stops_the_reader(prediction_id):
    events.append(prediction_id, "status", {"status": "starting"})
    stream = fanout.watch(prediction_id, 0, idle_seconds=0.2)
    await collect(stream, 1)
    feed = fanout.hub().feeds[prediction_id]
    await stream.aclose()
    await asyncio.sleep(0.1)
    assert prediction_id not in fanout.hub().feeds
    assert feed.task.cancelled() or feed.task.done()


async def test_idle_periods_yield_none_for_keep_alives(prediction_id):
    events.append(prediction_id, "status", {"status": "starting"})
    stream = fanout.watch(prediction_id, 1, idle_seconds=0.1)
    assert await asyncio.wait_for(stream.__anext__(), 2) is None
    await stream.aclose()
