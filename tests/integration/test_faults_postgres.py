"""PostgreSQL becomes unreachable for a while, then comes back.

The guarantee: while the database is unreachable, /readyz answers 503 promptly (so a
load balancer takes the instance out); once it is reachable again, /readyz answers 200
and predictions run end to end again, with no restart and no manual step: psycopg's pool
discards broken connections (health checks on checkout) and opens new ones.

The fault is a TCP proxy of the test's own between this stack and PostgreSQL: cutting it
drops every open connection and refuses new ones (ECONNREFUSED), as a database restart
or failover does. A silent network partition (packets dropped, no reset) is not covered.
The stack (web, worker, its own redis-server) reaches the database only through it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from models_hub.demo import load_demo_catalog
from tests.integration.conftest import wait_until
from tests.integration.faults import (
    PrivateWorker,
    RedisServer,
    TcpProxy,
    WebServer,
    database_url,
    postgres_address,
    private_env,
    redis_env,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]
OUTAGE_SECONDS = 3
# A probe must answer well within a load balancer's usual probe timeout (5 s or more).
PROBE_BUDGET_SECONDS = 5


@dataclass
class ProxiedStack:
    proxy: TcpProxy
    web: WebServer
    worker: PrivateWorker


@pytest.fixture
def proxied_stack(tmp_path: Path, transactional_db) -> Iterator[ProxiedStack]:
    # transactional_db first: the processes must get the test database's URL.
    proxy = TcpProxy(*postgres_address())
    redis_server = RedisServer(tmp_path, persistent=False)
    proxy.start()
    redis_server.start()
    urls = {**redis_env(redis_server.url), "DATABASE_URL": database_url(port=proxy.port)}
    stack = ProxiedStack(
        proxy, WebServer(private_env(**urls)), PrivateWorker("cpu,default", extra_env=urls)
    )
    try:
        stack.worker.start(concurrency=1)
        stack.web.start()
        yield stack
    finally:
        stack.worker.stop()
        stack.web.stop()
        redis_server.stop()
        proxy.close()


def readyz(base_url: str) -> tuple[int, float]:
    started = time.monotonic()
    response = httpx.get(f"{base_url}/readyz", timeout=30)
    return response.status_code, time.monotonic() - started


def run_prediction(api: httpx.Client, prompt: str) -> dict:
    body = {"model": "echo", "input": {"prompt": prompt, "tokens_per_second": 0}}
    response = api.post("/api/v1/predictions", json=body, headers={"Prefer": "wait=30"})
    assert response.status_code == 201, response.text
    return response.json()


def test_database_outage_turns_readyz_503_then_recovers_on_its_own(proxied_stack, org, token_for):
    load_demo_catalog()
    base_url = proxied_stack.web.base_url
    headers = {"Authorization": f"Bearer {token_for(org)}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as api:
        assert readyz(base_url)[0] == 200
        assert run_prediction(api, "before the outage")["status"] == "succeeded"

        proxied_stack.proxy.cut()
        status, seconds = readyz(base_url)
        assert status == 503
        assert seconds < PROBE_BUDGET_SECONDS, f"/readyz took {seconds:.1f}s while cut"
        body = httpx.get(f"{base_url}/readyz").json()
        assert body["down"] == ["database"]
        time.sleep(OUTAGE_SECONDS)

        proxied_stack.proxy.restore()
        wait_until(lambda: readyz(base_url)[0] == 200, timeout=30, interval=0.5)
        after = run_prediction(api, "after the outage")
        assert after["status"] == "succeeded", after
        assert after["output"] == "after the outage"
