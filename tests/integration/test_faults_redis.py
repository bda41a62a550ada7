"""Redis restarts while predictions stream: no prediction is lost and every SSE client
resumes with no gap once Redis is back.

The product guarantee under test: Redis runs with persistence (append-only file, as in
docker-compose.yml), so a *clean* restart (SIGTERM, then start: a deploy, a container
restart, a failover to a replica) keeps every event log, seq counter and queued task.
Across the outage, writers (the worker appending events, the cancel check between
tokens) retry instead of failing the prediction, and readers (the SSE tail) wait and
continue from their last seq. Not covered: Redis *crashing* and losing its last second
of writes (appendfsync everysec), or running without persistence; an event log that has
vanished cannot be resumed, only replayed from the database once the prediction ends.

This stack is private: its own redis-server (event logs, cache, presence and the Celery
broker), web process and worker; only PostgreSQL (the test database) is shared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from inference.models import Prediction, Status
from models_hub.demo import load_demo_catalog
from tests.integration.faults import (
    PrivateWorker,
    RedisServer,
    ResumingReader,
    SseEvent,
    WebServer,
    assert_complete_stream,
    private_env,
    redis_env,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]
STREAMS = 3
WORDS = 40
TOKENS_PER_SECOND = 10  # about 4 s per prediction: the restart lands mid-stream
REDIS_DOWNTIME_SECONDS = 1.0


@dataclass
class RedisStack:
    redis: RedisServer
    web: WebServer
    worker: PrivateWorker


@pytest.fixture
def redis_stack(tmp_path: Path, transactional_db) -> Iterator[RedisStack]:
    # transactional_db first: the processes must get the test database's URL.
    server = RedisServer(tmp_path, persistent=True)
    server.start()
    urls = redis_env(server.url)
    stack = RedisStack(
        server, WebServer(private_env(**urls)), PrivateWorker("cpu,default", extra_env=urls)
    )
    try:
        stack.worker.start(concurrency=STREAMS)
        stack.web.start()
        yield stack
    finally:
        stack.worker.stop()
        stack.web.stop()
        server.stop()


def create_prediction(base_url: str, token: str, prompt: str) -> str:
    body = {"model": "echo", "input": {"prompt": prompt, "tokens_per_second": TOKENS_PER_SECOND}}
    response = httpx.post(
        f"{base_url}/api/v1/predictions",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_redis_restart_mid_stream_loses_no_event_and_no_prediction(redis_stack, org, token_for):
    load_demo_catalog()
    token = token_for(org)
    prompts = [" ".join(f"p{n}w{i}" for i in range(WORDS)) for n in range(STREAMS)]
    ids = [create_prediction(redis_stack.web.base_url, token, prompt) for prompt in prompts]
    streaming = threading.Barrier(STREAMS + 1)

    def on_event(event: SseEvent) -> None:
        # Each client signals once, after a few output deltas.
        if event.type == "output" and event.seq == 5:
            streaming.wait(30)

    readers = [
        ResumingReader(lambda: redis_stack.web.base_url, pid, token, on_event) for pid in ids
    ]
    threads = [reader.start_thread(timeout=60) for reader in readers]
    streaming.wait(60)
    redis_stack.redis.restart(REDIS_DOWNTIME_SECONDS)
    for thread in threads:
        thread.join(70)
    for reader, prompt in zip(readers, prompts, strict=True):
        assert reader.error is None, reader.error
        assert reader.done, f"stream of {reader.prediction_id} did not finish"
        assert assert_complete_stream(reader.events)["output"] == prompt
    stored = {p.pk: (p.status, p.output) for p in Prediction.objects.filter(pk__in=ids)}
    assert stored == {pid: (Status.SUCCEEDED, text) for pid, text in zip(ids, prompts, strict=True)}
    # Admission (presence, rate limits, the broker) works again on the restarted Redis.
    after = create_prediction(redis_stack.web.base_url, token, "after the restart")
    reader = ResumingReader(lambda: redis_stack.web.base_url, after, token)
    reader.run(deadline=time.monotonic() + 60)
    assert assert_complete_stream(reader.events)["output"] == "after the restart"
