"""One API call checks every process cache its token lookup and admission use in one
Redis round trip (`hotcache.read_once`), and still sees its own process's writes at once
and other processes' writes from the next call on."""

from __future__ import annotations

import httpx
import pytest
import redis
from django.test import Client

from inference import admission, presence
from models_hub.demo import load_demo_catalog
from models_hub.hot import CATALOG_SCOPE
from portal import hotcache
from portal.asgi import application
from portal.redis_client import sync_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def generation_reads(monkeypatch) -> list[list[str]]:
    """The keys of every MGET of cache generations, in order."""
    reads: list[list[str]] = []
    mget = redis.Redis.mget

    def recording(self, keys, *args):
        names = [keys] if isinstance(keys, str) else list(keys)
        if any(name.startswith(hotcache.KEY_PREFIX) for name in names):
            reads.append(names)
        return mget(self, keys, *args)

    monkeypatch.setattr(redis.Redis, "mget", recording)
    return reads


def test_lookups_in_one_block_read_each_generation_once(generation_reads):
    with hotcache.read_once("a", "b"):
        first = hotcache.stamp("a")
        assert hotcache.stamp("a", "b")[:2] == first
        assert len(generation_reads) == 1
        hotcache.stamp("b", "c")  # a scope not read on entry: read once, when first asked
        hotcache.stamp("c")
    assert len(generation_reads) == 2
    assert generation_reads[1] == ["hot:gen:c"]
    hotcache.stamp("a")  # outside a block: every lookup reads
    assert len(generation_reads) == 3


def test_a_bump_within_the_block_is_seen_by_its_next_lookup():
    with hotcache.read_once("a"):
        before = hotcache.stamp("a")
        hotcache.bump("a")
        assert hotcache.stamp("a") != before


def test_another_process_change_is_seen_by_the_next_block():
    with hotcache.read_once("a"):
        before = hotcache.stamp("a")
        sync_client().set("hot:gen:a", "changed elsewhere")
        assert hotcache.stamp("a") == before  # the block's lookups agree with each other
    with hotcache.read_once("a"):
        assert hotcache.stamp("a")[1] == b"changed elsewhere"


def test_redis_down_on_entry_leaves_each_lookup_to_read_on_its_own(monkeypatch):
    def down(keys):
        raise redis.ConnectionError("down")

    monkeypatch.setattr(hotcache, "_read_generations", down)
    with hotcache.read_once("a"):
        assert hotcache.stamp("a") is None  # served from the database, never a cache


@pytest.fixture
def bearer(org, token_for) -> dict[str, str]:
    load_demo_catalog()
    return {"Authorization": f"Bearer {token_for(org)}"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1},
        ),
        ("/api/v1/predictions", {"model": "echo", "input": {"prompt": "hi", "max_new_tokens": -1}}),
    ],
)
async def test_an_api_call_reads_the_generations_in_two_round_trips(
    bearer, generation_reads, path, body
):
    """The token, the catalog and the plans in one read; the org's subscriptions, known
    once the token is, in a second (a read per lookup before: four for /v1, three for a
    prediction)."""
    transport = httpx.ASGITransport(app=application, client=("198.51.100.30", 40000))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=bearer
    ) as client:
        await client.post(path, json=body)  # the caches fill
        generation_reads.clear()
        refused = await client.post(path, json=body)
    # The input is checked after the token, the model and the plan were looked up, and
    # before anything that depends on a worker being there.
    assert refused.status_code == 400, refused.text
    assert len(generation_reads) == 2, generation_reads


def test_ending_the_block_early_reads_afresh():
    with hotcache.read_once("a"):
        hotcache.stamp("a")
        sync_client().set("hot:gen:a", "changed elsewhere")
        hotcache.end_read_once()
        assert hotcache.stamp("a")[1] == b"changed elsewhere"


def test_a_call_that_waits_looks_up_afresh_after_the_wait(bearer, monkeypatch):
    """`Prefer: wait` holds the call up to a minute: what it looks up from the wait on
    sees what other processes changed meanwhile, not what the call read on entry."""
    seen: list[hotcache.Stamp | None] = []

    def wait_while_another_process_changes_the_catalog(prediction_id, seconds, **kwargs):
        sync_client().set(hotcache._scope_key(CATALOG_SCOPE), "changed during the wait")
        seen.append(hotcache.stamp(CATALOG_SCOPE))

    monkeypatch.setattr(
        admission.events, "wait_for_terminal", wait_while_another_process_changes_the_catalog
    )
    presence.announce("test-worker", ["cpu", "default"])
    try:
        response = Client(headers=bearer).post(
            "/api/v1/predictions",
            {"model": "echo", "input": {"prompt": "hi"}},
            content_type="application/json",
            headers={"Prefer": "wait=1"},
        )
    finally:
        presence.withdraw("test-worker", ["cpu", "default"])
    assert response.status_code == 201, response.content
    assert seen[0][1] == b"changed during the wait"
