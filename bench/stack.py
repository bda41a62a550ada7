"""The real stack for benchmarks: PostgreSQL, Redis, one Celery worker, one ASGI server.

Every `running_stack()` migrates a fresh database named after BENCH_DATABASE_URL (default
`portal_bench`, plus a unique suffix) and drops it on the way out, so runs never see each
other's rows and never touch a database they did not create; DATABASE_URL is ignored on
purpose, because it usually points at a development or test database. Redis is
REDIS_URL (default db 9), which the worker also uses as its broker.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/portal_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
# A stopped process that ignores SIGTERM this long is killed: a Celery worker's warm
# shutdown waits for its running tasks, and a slow echo prediction may run for minutes.
STOP_GRACE_SECONDS = 20


# Benchmarks measure the pipeline with quota enforcement on, but must not hit the demo
# plans' caps: the bench org gets a hidden plan with the demo models and huge limits (the
# stream benchmark holds a thousand streams of one org).
BENCH_PLAN = """
from billing.models import Plan
from billing.checkout import grant_plan
from portal.models import Organization
team = Plan.objects.get(slug="team")
plan, _ = Plan.objects.update_or_create(slug="bench", defaults=dict(
    name="Bench", is_public=False, allowance=None,
    rate_limit_per_minute=10**7, max_concurrent_waits=10**6, max_concurrent_streams=10**6,
    tasks=team.tasks))
plan.included_models.set(team.included_models.all())
grant_plan(Organization.objects.get(slug="{slug}"), plan, None)
"""


@dataclass
class Stack:
    base_url: str
    token: str
    web_pid: int
    env: dict[str, str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_fd_limit() -> None:
    """Thousands of open streams need as many descriptors on both ends; children inherit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url
    env.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
    # The worker must consume the bench's own Redis, whatever the shell says.
    env["CELERY_BROKER_URL"] = env["REDIS_URL"]
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", LOG_LEVEL="WARNING", DEBUG="0")
    # Benchmarks measure the pipeline, not the abuse limits: every client is 127.0.0.1.
    env.setdefault("DEFAULT_TOKEN_RATE_LIMIT_PER_MINUTE", "1000000")
    env.setdefault("IP_RATE_LIMIT_PER_MINUTE", "1000000000")
    return env


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    return result.stdout.strip()


# --- Databases ---------------------------------------------------------------------------


def _admin_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/postgres"


def _create_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def _drop_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        # FORCE: a pool in a process that died without closing must not keep it alive.
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database(suffix: str = "") -> Iterator[str]:
    """A new, uniquely named database on the BENCH_DATABASE_URL server, dropped at exit."""
    base = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    url = f"{base}{suffix}_{os.getpid()}_{secrets.token_hex(3)}"
    _create_database(url)
    try:
        yield url
    finally:
        _drop_database(url)


# --- Processes ---------------------------------------------------------------------------


def stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each leader, then SIGKILL the group of whatever outlives the grace period."""
    # The leader only: a Celery worker stops its own pool children (SIGTERM sent to
    # them directly reads as lost workers), and uvicorn closes its connections.
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        # The group too: a worker's pool children may outlive their parent.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_web(env: dict[str, str], port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip


def _start_worker(env: dict[str, str], concurrency: int) -> subprocess.Popen:
    # A node name per run: two benches on one Redis must not look like one duplicated node.
    node = f"bench-{os.getpid()}@%h"
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", "cpu,default",
         "--concurrency", str(concurrency), "--loglevel", "WARNING", "-n", node],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip


@contextmanager
def running_stack(worker_concurrency: int = 2) -> Iterator[Stack]:
    raise_fd_limit()
    with fresh_database() as database_url:
        env = _env(database_url)
        _manage(env, "migrate", "--noinput")
        _manage(env, "load_demo")
        slug = _manage(env, "create_org", "--name", "Bench", "--owner-email", "bench@example.com")
        token = _manage(env, "issue_token", "--org", slug, "--name", "bench")
        _manage(env, "shell", "-c", BENCH_PLAN.format(slug=slug))
        port = free_port()
        processes: list[subprocess.Popen] = []
        try:
            processes.append(_start_worker(env, worker_concurrency))
            processes.append(start_web(env, port))
            base_url = f"http://127.0.0.1:{port}"
            _wait_ready(base_url, token)
            yield Stack(base_url, token, processes[1].pid, env)
        finally:
            stop(processes)


@contextmanager
def web_server(stack: Stack) -> Iterator[Stack]:
    """A second, fresh ASGI process on the same database, Redis and worker: for figures
    such as memory growth that a process which already served a round would distort."""
    port = free_port()
    process = start_web(stack.env, port)
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_http(f"{base_url}/healthz")
        yield dataclasses.replace(stack, base_url=base_url, web_pid=process.pid)
    finally:
        stop([process])


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(httpx.HTTPError):
            if httpx.get(url).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer")


def _wait_ready(base_url: str, token: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    body = {"model": "echo", "input": {"prompt": "ready", "tokens_per_second": 0}}
    headers = {"Authorization": f"Bearer {token}", "Prefer": "wait=10"}
    while time.monotonic() < deadline:
        try:
            response = httpx.post(f"{base_url}/api/v1/predictions", json=body, headers=headers)
            if response.status_code == 201 and response.json()["status"] == "succeeded":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError("the stack did not become ready")
