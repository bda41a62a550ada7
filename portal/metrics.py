"""Prometheus metrics, kept in Redis so that one `/metrics` shows every process.

Web processes and Celery workers (and their prefork children) are separate processes,
often on separate hosts; each one adds to the same Redis hashes and `/metrics` renders
them in the text exposition format. Recording never breaks the request or task that
records: a Redis error drops the samples.

Recording costs no I/O: samples are summed in process and a background thread writes
them every METRICS_FLUSH_SECONDS in one pipeline (a Redis round trip per request and
several per prediction were a measurable part of each call's CPU). `render` writes this
process's own first, so what it shows includes everything recorded here before it.

Layout: one hash per metric. Counters: field = label string, value = total. Histograms:
field = label string + bucket index (non-cumulative counts), plus `sum` and `count`
fields. Gauges: field = label string, value = "<value> <expiry>" (a process that dies
stops refreshing, and its gauge drops out).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

PREFIX = "metrics:"
SEP = "\x1f"  # between a label string and a histogram field suffix; never in a label
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
PREDICTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# name -> (type, help, buckets)
METRICS: dict[str, tuple[str, str, tuple[float, ...]]] = {
    "portal_http_request_duration_seconds": (
        "histogram",
        "Time to the response's headers, by route pattern, method and status class.",
        LATENCY_BUCKETS,
    ),
    "portal_predictions_total": (
        "counter",
        "Predictions that reached a terminal status, by model and status.",
        (),
    ),
    "portal_prediction_queue_wait_seconds": (
        "histogram",
        "Time from admission to a worker claiming the prediction.",
        PREDICTION_BUCKETS,
    ),
    "portal_prediction_predict_seconds": (
        "histogram",
        "Time from claim to the terminal status.",
        PREDICTION_BUCKETS,
    ),
    "portal_tokens_generated_total": ("counter", "Output tokens generated, by model.", ()),
    "portal_quota_rejections_total": (
        "counter",
        "Predictions refused by the plan (402) or its request rate (429), by code.",
        (),
    ),
    "portal_webhook_failures_total": (
        "counter",
        "Outgoing webhook delivery attempts that failed (network error or non-2xx).",
        (),
    ),
    "portal_worker_models_loaded": (
        "gauge",
        "Models held in memory by each worker process.",
        (),
    ),
}


# Its own connection, with short timeouts and no retries: while Redis is down a request
# must not wait on recording its latency (the shared client retries for a while).
TIMEOUT_SECONDS = 0.25


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=TIMEOUT_SECONDS,
        socket_connect_timeout=TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
    )


def sync_client() -> redis.Redis:
    return _client(settings.REDIS_URL)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_string(labels: dict[str, str]) -> str:
    return ",".join(f'{key}="{_escape(str(value))}"' for key, value in sorted(labels.items()))


def _key(name: str) -> str:
    return PREFIX + name


# --- Recording ------------------------------------------------------------------------


class _Pending:
    """What this process recorded since its last flush: increments summed per hash field,
    gauges by their latest value."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.increments: dict[tuple[str, str], float] = defaultdict(float)
        self.gauges: dict[tuple[str, str], str] = {}
        self.flusher: threading.Thread | None = None

    def take(self) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], str]]:
        with self.lock:
            taken = self.increments, self.gauges
            self.increments, self.gauges = defaultdict(float), {}
        return taken


_pending = _Pending()


def _forget_parents_samples() -> None:
    # A forked child (a Celery prefork worker) must not write its parent's samples again,
    # nor wait on a lock a parent's thread held at the fork.
    global _pending
    _pending = _Pending()


os.register_at_fork(after_in_child=_forget_parents_samples)


def _add(name: str, amounts: dict[str, float]) -> None:
    pending = _pending
    with pending.lock:
        for field, amount in amounts.items():
            pending.increments[(_key(name), field)] += amount
        _ensure_flusher(pending)


def _ensure_flusher(pending: _Pending) -> None:
    """The process's flushing thread, started by its first sample (called under the lock)."""
    if pending.flusher is None:
        pending.flusher = threading.Thread(target=_flush_forever, name="metrics", daemon=True)
        pending.flusher.start()


def _flush_forever() -> None:
    while True:
        time.sleep(settings.METRICS_FLUSH_SECONDS)
        try:
            flush()
        except Exception:
            # The thread must outlive any one failure, or samples would pile up unwritten.
            logger.exception("metrics flush failed")


def flush() -> None:
    """Writes this process's samples to Redis now; on a Redis error they are dropped."""
    increments, gauges = _pending.take()
    if not increments and not gauges:
        return
    try:
        with sync_client().pipeline(transaction=False) as pipe:
            for (key, field), amount in increments.items():
                pipe.hincrbyfloat(key, field, amount)
            for (key, field), value in gauges.items():
                pipe.hset(key, field, value)
            pipe.execute()
    except redis.RedisError:
        logger.debug("metrics samples dropped", exc_info=True)


atexit.register(flush)


def inc(name: str, labels: dict[str, str], amount: float = 1) -> None:
    _add(name, {label_string(labels): amount})


def observe(name: str, labels: dict[str, str], value: float) -> None:
    buckets = METRICS[name][2]
    index = next((i for i, bound in enumerate(buckets) if value <= bound), len(buckets))
    field = label_string(labels)
    _add(name, {f"{field}{SEP}{index}": 1, f"{field}{SEP}sum": value, f"{field}{SEP}count": 1})


def set_gauge(name: str, labels: dict[str, str], value: float, ttl_seconds: float) -> None:
    expires = time.time() + ttl_seconds
    pending = _pending
    with pending.lock:
        pending.gauges[(_key(name), label_string(labels))] = f"{value} {expires}"
        _ensure_flusher(pending)


# --- Exposition ----------------------------------------------------------------------


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def _series(name: str, labels: str, value: float, extra: str = "") -> str:
    inner = ",".join(part for part in (labels, extra) if part)
    return f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}"


def _render_histogram(name: str, buckets: tuple[float, ...], raw: dict[str, str]) -> list[str]:
    per_labels: dict[str, dict[str, float]] = defaultdict(dict)
    for field, value in raw.items():
        labels, _, suffix = field.rpartition(SEP)
        per_labels[labels][suffix] = float(value)
    lines = []
    for labels, values in sorted(per_labels.items()):
        cumulative = 0.0
        for index, bound in enumerate((*buckets, math.inf)):
            cumulative += values.get(str(index), 0)
            lines.append(_series(f"{name}_bucket", labels, cumulative, f'le="{_number(bound)}"'))
        lines.append(_series(f"{name}_sum", labels, values.get("sum", 0)))
        lines.append(_series(f"{name}_count", labels, values.get("count", 0)))
    return lines


def _render_gauge(name: str, raw: dict[str, str], now: float) -> list[str]:
    lines = []
    for labels, stored in sorted(raw.items()):
        value, expires = stored.split()
        if float(expires) > now:
            lines.append(_series(name, labels, float(value)))
    return lines


def _render_counter(name: str, raw: dict[str, str]) -> list[str]:
    return [_series(name, labels, float(value)) for labels, value in sorted(raw.items())]


def _metric_lines(name: str, kind: str, buckets: tuple[float, ...], raw: dict) -> Iterable[str]:
    if kind == "histogram":
        return _render_histogram(name, buckets, raw)
    if kind == "gauge":
        return _render_gauge(name, raw, time.time())
    return _render_counter(name, raw)


def render() -> str:
    """Every metric in the Prometheus text format (version 0.0.4)."""
    flush()
    with sync_client().pipeline(transaction=False) as pipe:
        for name in METRICS:
            pipe.hgetall(_key(name))
        stored = pipe.execute()
    lines: list[str] = []
    for (name, (kind, help_text, buckets)), raw in zip(METRICS.items(), stored, strict=True):
        decoded = {field.decode(): value.decode() for field, value in raw.items()}
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += _metric_lines(name, kind, buckets, decoded)
    return "\n".join(lines) + "\n"
