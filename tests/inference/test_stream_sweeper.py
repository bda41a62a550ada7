"""A web process renews its open streams' slots and re-checks their callers together: one
sweep every interval, a few round trips for all of them. Per stream, that work kept a
process holding 5000 idle streams too busy to serve them (bench/streams.py: every stream
"closed early")."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inference import concurrency, hub, streaming
from portal import services
from portal.auth import resolve_bearer, resolve_session
from portal.models import Membership
from portal.redis_client import sync_client

pytestmark = pytest.mark.django_db(transaction=True)

STREAMS = 300


@pytest.fixture
def many_streams(settings):
    settings.MAX_CONCURRENT_STREAMS_PER_ORG = STREAMS + 10


def _guards(principal, count: int) -> list[streaming.StreamGuard]:
    return [
        streaming.StreamGuard(
            principal, concurrency.acquire(principal.org, concurrency.Kind.STREAM)
        )
        for _ in range(count)
    ]


def _lease_ends(guards: list[streaming.StreamGuard]) -> list[float]:
    return [sync_client().zscore(guard.slot.key, guard.slot.id) for guard in guards]


def test_one_sweep_renews_every_slot_and_rechecks_all_tokens_in_one_query(many_streams, org, owner):
    issued = [services.issue_token(org, owner, f"t{i}") for i in range(3)]
    principals = [resolve_bearer(f"Bearer {token.plaintext}") for token in issued]
    guards = [guard for p in principals for guard in _guards(p, STREAMS // 3)]
    before = _lease_ends(guards)

    with CaptureQueriesContext(connection) as queries:
        assert streaming._sweep(guards) == []
    assert len(queries) == 1
    assert all(after > ends for after, ends in zip(_lease_ends(guards), before, strict=True))

    services.revoke_token(org, owner, issued[1].token.pk)
    revoked = streaming._sweep(guards)
    assert revoked == [guard for guard in guards if guard.principal is principals[1]]
    for guard in guards:
        guard.slot.release()


def test_a_sweep_flags_the_streams_of_a_removed_member(org, teammate):
    principal = resolve_session(teammate, org.pk)
    guards = _guards(principal, 2)
    assert streaming._sweep(guards) == []
    Membership.objects.filter(user=teammate, org=org).delete()
    assert streaming._sweep(guards) == guards
    for guard in guards:
        guard.slot.release()


async def test_the_sweeper_flags_revoked_streams_and_ends_with_the_last_one(
    settings, many_streams, org, owner
):
    settings.STREAM_PRINCIPAL_RECHECK_SECONDS = 0.2
    issued = await database_sync_to_async(services.issue_token)(org, owner, "sweep")
    principal = await database_sync_to_async(resolve_bearer)(f"Bearer {issued.plaintext}")
    guards = [await streaming.StreamGuard.open(principal) for _ in range(20)]
    sweeper = streaming._sweeper()
    assert sweeper.guards == set(guards) and sweeper.task is not None

    await database_sync_to_async(services.revoke_token)(org, owner, issued.token.pk)
    for _ in range(50):
        if all(guard.revoked for guard in guards):
            break
        await asyncio.sleep(0.1)
    assert all(guard.revoked for guard in guards)

    task = sweeper.task
    for guard in guards:
        await guard.release()
    await guards[0].release()  # twice is harmless
    assert sweeper.task is None and not sweeper.guards
    await asyncio.sleep(0)
    assert task.cancelled() or task.done()
    held = database_sync_to_async(concurrency.held_count)
    assert await held(org.pk, concurrency.Kind.STREAM) == 0


def _zrem_calls() -> int:
    return sync_client().info("commandstats").get("cmdstat_zrem", {}).get("calls", 0)


async def test_streams_that_end_together_give_their_slots_back_in_one_command(
    many_streams, org, owner
):
    """A prediction's `done` ends all its streams at once: their slots go back to Redis
    together, not in a thread hop and a round trip each."""
    issued = await database_sync_to_async(services.issue_token)(org, owner, "ending")
    principal = await database_sync_to_async(resolve_bearer)(f"Bearer {issued.plaintext}")
    guards = [await streaming.StreamGuard.open(principal) for _ in range(STREAMS)]
    held = database_sync_to_async(concurrency.held_count)
    assert await held(org.pk, concurrency.Kind.STREAM) == STREAMS
    before = _zrem_calls()

    releases = [asyncio.create_task(guard.release()) for guard in guards]
    await asyncio.sleep(0)  # every release has joined the batch
    releases[0].cancel()  # a stream cancelled meanwhile must not cancel the others'
    await asyncio.gather(*releases, return_exceptions=True)

    assert all(release.done() for release in releases)
    assert await held(org.pk, concurrency.Kind.STREAM) == 0
    assert _zrem_calls() - before <= 2
    assert not streaming._sweeper().guards


async def _drain(tail, woken: list) -> None:
    async for event in tail:
        woken.append(event)


async def test_idle_streams_sleep_until_a_revocation_ends_them(
    settings, monkeypatch, many_streams, org, owner
):
    """An idle stream is not woken every sweep to look at its guard: the sweep that finds
    its caller revoked fails its wait itself."""
    settings.STREAM_PRINCIPAL_RECHECK_SECONDS = 0.2
    waits = []
    wait = hub.Watcher.next

    def counted_wait(watcher, idle_seconds):
        waits.append(watcher)
        return wait(watcher, idle_seconds)

    monkeypatch.setattr(hub.Watcher, "next", counted_wait)
    issued = await database_sync_to_async(services.issue_token)(org, owner, "idle")
    principal = await database_sync_to_async(resolve_bearer)(f"Bearer {issued.plaintext}")
    quiet_log = f"quiet-{issued.token.pk}"
    woken: list[list] = [[] for _ in range(20)]
    streams = []
    for wakes in woken:
        guard = await streaming.StreamGuard.open(principal)
        tail = streaming.guarded_tail(quiet_log, 0, guard)
        streams.append((guard, asyncio.create_task(_drain(tail, wakes))))

    await asyncio.sleep(1.0)  # five sweeps
    assert woken == [[] for _ in streams]
    assert len(waits) == len(streams)  # each still in its first wait
    assert not any(task.done() for _, task in streams)

    await database_sync_to_async(services.revoke_token)(org, owner, issued.token.pk)
    done, pending = await asyncio.wait([task for _, task in streams], timeout=2)
    assert not pending
    for task in done:
        assert isinstance(task.exception(), streaming.CredentialsRevoked)
    for guard, _ in streams:
        await guard.release()


async def test_streams_queued_behind_a_cancelled_release_batch_still_end(many_streams, org, owner):
    """The event loop closing cancels the batch on its way to Redis: the streams queued
    for the next batch end anyway (their slots run out with their leases)."""
    issued = await database_sync_to_async(services.issue_token)(org, owner, "closing")
    principal = await database_sync_to_async(resolve_bearer)(f"Bearer {issued.plaintext}")
    guards = [await streaming.StreamGuard.open(principal) for _ in range(3)]
    sweeper = streaming._sweeper()
    first = asyncio.create_task(guards[0].release())
    while sweeper._releaser is None or sweeper._releasing:
        await asyncio.sleep(0)  # the first batch is on its way
    queued = [asyncio.create_task(guard.release()) for guard in guards[1:]]
    await asyncio.sleep(0)
    assert sweeper._releasing  # queued behind it
    sweeper._releaser.cancel()
    await asyncio.wait_for(asyncio.gather(first, *queued), timeout=5)
