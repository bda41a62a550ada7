"""Liveness and readiness probes for load balancers and the run command."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from kombu import Connection

PROBE_TIMEOUT_SECONDS = 2


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    pool = getattr(connection, "pool", None)  # psycopg's pool (PostgreSQL, DB_POOL on)
    if pool is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return
    # Through the pool with the probe's own timeout: Django would wait the pool's full
    # checkout timeout (10 s) while the database is down, and a probe must answer fast.
    pool.open()  # a no-op once open; Django opens it lazily on the first query too
    with pool.connection(timeout=PROBE_TIMEOUT_SECONDS) as conn:
        conn.execute("SELECT 1")


def _check_redis() -> None:
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=PROBE_TIMEOUT_SECONDS,
        socket_connect_timeout=PROBE_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    finally:
        client.close()


def _check_broker() -> None:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=PROBE_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=1, timeout=PROBE_TIMEOUT_SECONDS)


CHECKS = {"database": _check_database, "redis": _check_redis, "broker": _check_broker}


def readyz(request: HttpRequest) -> JsonResponse:
    down = []
    for name, check in CHECKS.items():
        try:
            check()
        except Exception:
            down.append(name)
            if name == "database":
                # A broken connection must not poison the next probe.
                connection.close()
    if down:
        return JsonResponse({"status": "unavailable", "down": down}, status=503)
    return JsonResponse({"status": "ok"})
