"""The real stack for benchmarks: PostgreSQL, Redis, one Celery worker, one ASGI server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/portal_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"


# Benchmarks measure the pipeline with quota enforcement on, but must not hit the demo
# plans' caps: the bench org gets a hidden plan with the demo models and huge limits.
BENCH_PLAN = """
from billing.models import Plan
from billing.services import grant_plan
from portal.models import Organization
team = Plan.objects.get(slug="team")
plan, _ = Plan.objects.update_or_create(slug="bench", defaults=dict(
    name="Bench", is_public=False, included_requests=10**9, included_tokens=10**12,
    rate_limit_per_minute=10**7, tasks=team.tasks))
plan.included_models.set(team.included_models.all())
grant_plan(Organization.objects.get(slug="{slug}"), plan, None)
"""


@dataclass
class Stack:
    base_url: str
    token: str
    web_pid: int
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    env.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", LOG_LEVEL="WARNING", DEBUG="0")
    # Benchmarks measure the pipeline, not the abuse limits.
    env.setdefault("DEFAULT_TOKEN_RATE_LIMIT_PER_MINUTE", "1000000")
    return env


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    return result.stdout.strip()


def _create_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


@contextmanager
def running_stack(worker_concurrency: int = 2) -> Iterator[Stack]:
    env = _env()
    _create_database(env["DATABASE_URL"])
    _manage(env, "migrate", "--noinput")
    _manage(env, "load_demo")
    slug = _manage(env, "create_org", "--name", "Bench", "--owner-email", "bench@example.com")
    token = _manage(env, "issue_token", "--org", slug, "--name", "bench")
    _manage(env, "shell", "-c", BENCH_PLAN.format(slug=slug))
    port = _free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", "cpu,default",
             "--concurrency", str(worker_concurrency), "--loglevel", "WARNING", "-n", "bench@%h"],
            cwd=ROOT, env=env, start_new_session=True,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env=env, start_new_session=True,
        ),
    ]  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, token)
        yield Stack(base_url, token, processes[1].pid, env)
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)


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
