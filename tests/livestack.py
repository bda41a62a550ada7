"""The real stack for integration and end-to-end tests: an ASGI server and Celery worker
processes that share the test database and a Redis database with the test process, and
have a broker of their own (see `stack_broker_url`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx
from celery import Task
from django.conf import settings
from django.db import connection

from inference.presence import queue_has_worker

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 60
# Short, so that the worker-death tests see the reaper act within seconds.
STACK_LEASE_SECONDS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_broker_url() -> str:
    """The stack's broker: the Redis database 8 above the test process's.

    Tests outside the stack enqueue tasks nobody is meant to run (admitting a prediction
    does). On a shared broker the stack's worker ran them, writing to the test database
    while the test's teardown emptied it, and the deadlock failed the flush."""
    url = urlsplit(settings.REDIS_URL)
    database = int(url.path.lstrip("/") or 0)
    return url._replace(path=f"/{(database + 8) % 16}").geturl()


def send_to_stack(task: Task, *args: object, queue: str) -> None:
    """`task` queued for the stack's worker, as the web process would queue it."""
    with task.app.connection_for_write(stack_broker_url()) as broker:
        task.apply_async(args=list(args), queue=queue, connection=broker)


def stack_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=stack_broker_url(),
        PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1",
        SITE_URL="http://127.0.0.1",
        PREDICTION_LEASE_SECONDS=str(STACK_LEASE_SECONDS),
    )
    env.update(extra or {})
    return env


@dataclass
class Worker:
    queues: str
    process: subprocess.Popen | None = None
    name: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:8]}")
    # Extra environment on top of stack_env() (the e2e stack configures Stripe).
    extra_env: dict[str, str] | None = None

    def start(self, concurrency: int | None = 1) -> None:
        """`concurrency` None leaves pool and concurrency to the settings."""
        command = [
            sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", self.queues,
            "-n", f"{self.name}@%h", "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        if concurrency is not None:
            command += ["--concurrency", str(concurrency)]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=stack_env(self.extra_env), start_new_session=True
        )
        wait_until(lambda: all(queue_has_worker(q) for q in self.queues.split(",")))

    def kill(self) -> None:
        """SIGKILL to the whole worker (parent and pool children), like a host dying."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Stack:
    base_url: str
    ws_url: str
    worker: Worker
    web: subprocess.Popen


def wait_until(
    condition: Callable[[], object], timeout: float = START_TIMEOUT_SECONDS, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


@contextmanager
def running_stack(
    django_db_blocker,
    *,
    extra_env: dict[str, str] | None = None,
    web_stdout: IO[str] | None = None,
) -> Iterator[Stack]:
    """uvicorn and a worker (concurrency 2) on the test database until the block ends.

    `web_stdout` receives the web process's output (the console e-mail backend prints
    there); None leaves it on the test run's own stdout.
    """
    port = free_port()
    web = start_web(port, extra_env, web_stdout)
    worker = Worker("cpu,default", extra_env=extra_env)
    stack = Stack(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", worker, web)
    try:
        with django_db_blocker.unblock():
            stack.worker.start(concurrency=2)
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200)
        yield stack
    finally:
        # Tests may replace the worker (after killing one): stop whichever runs now.
        stack.worker.stop()
        stop_web(web)


def start_web(
    port: int, extra_env: dict[str, str] | None = None, web_stdout: IO[str] | None = None
) -> subprocess.Popen:
    """uvicorn serving portal.asgi in one process (its pid is the server's)."""
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=stack_env(extra_env), start_new_session=True, stdout=web_stdout,
    )  # fmt: skip


def stop_web(web: subprocess.Popen) -> None:
    os.killpg(web.pid, signal.SIGTERM)
    web.wait(timeout=20)


@contextmanager
def running_web(extra_env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Only the ASGI server (no worker), for tests of the HTTP layer: (base URL, process)."""
    port = free_port()
    web = start_web(port, extra_env)
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200)
        yield f"http://127.0.0.1:{port}", web
    finally:
        stop_web(web)
