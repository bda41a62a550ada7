"""A wait or stream takes its concurrency slot in a worker thread, which looks up the org's
plan: that thread's database connection must go back to the pool. When it did not, every
non-streamed `/v1` call kept one, and once the pool was empty every request of the process
failed with 500 (issue #11, item 2: no tenant may exhaust what others share)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.conf import settings

from inference.concurrency import Kind, held_count
from tests.conftest import fresh_window

pytestmark = pytest.mark.django_db


def test_v1_calls_give_their_slot_lookups_connection_back(org, token_for, api_client):
    client = api_client(token_for(org, scopes=["predict", "read"]))
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
    pool_size = settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"]
    for _ in range(pool_size + 2):
        response = client.post("/v1/chat/completions", body, content_type="application/json")
        assert response.status_code == 404, response.content


@pytest.mark.parametrize(
    ("stream", "kind"), [(False, Kind.WAIT), (True, Kind.STREAM)], ids=["wait", "stream"]
)
def test_a_v1_call_that_admission_refuses_gives_its_slot_back(
    org, token_for, api_client, stream, kind
):
    """The slot is taken before admission, in the same thread hop: a refusal gives it back."""
    client = api_client(token_for(org, scopes=["predict", "read"]))
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
    response = client.post(
        "/v1/chat/completions", {**body, "stream": stream}, content_type="application/json"
    )
    assert response.status_code == 404, response.content
    assert held_count(org.pk, kind) == 0


# --- A burst of waits and streams on the live server (pools of 4) ----------------------


def _burst(live_stack, token: str, stream: bool, calls: int) -> list[int]:
    body = {
        "model": "echo",
        "messages": [{"role": "user", "content": "a b c"}],
        "max_tokens": 3,
        "stream": stream,
    }
    barrier = threading.Barrier(calls)
    headers = {"Authorization": f"Bearer {token}"}

    def one(_: int) -> int:
        with httpx.Client(base_url=live_stack.base_url, headers=headers, timeout=60) as client:
            barrier.wait()
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                response.read()
                return response.status_code

    with ThreadPoolExecutor(max_workers=calls) as pool:
        return list(pool.map(one, range(calls)))


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stream", [False, True], ids=["wait", "stream"])
def test_a_burst_of_v1_calls_never_deadlocks_the_pool(
    live_stack, org, token_for, capped_plan, stream
):
    """Each call's token lookup took a pooled connection and kept it while its slot's plan
    lookup, in another thread, waited for a second: with as many calls at once as the
    pool has connections, none could go on, and all failed with 500 after the pool's
    10 s timeout."""
    capped_plan(org, waits=100, streams=100)
    fresh_window()
    statuses = _burst(live_stack, token_for(org, rate_limit_per_minute=10**6), stream, 12)
    assert statuses == [200] * 12
