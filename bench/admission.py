"""Admission benchmark: inference.services.admit from 50 concurrent threads, on PostgreSQL
and Redis, with billing in three modes:

- off:      the billing hooks replaced by no-ops (admission as it was before plans)
- ledger:   no plans configured: unmetered, but every admission is reserved in the ledger
- enforced: a plan with quota and rate limit: entitlement check, Redis plan rate limit,
            conditional-UPDATE reservation on the org's period row, ledger row

Reported: admissions per second (median of rounds, min-max), and enforced / off.
The task send goes to the Redis broker as usual; no worker consumes it.

    .venv/bin/python bench/admission.py [--clients 50] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_bench_admission")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/10")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DB_POOL_MAX_SIZE", "60")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# The benchmark measures admission, not the per-user abuse limit.
os.environ["DEFAULT_TOKEN_RATE_LIMIT_PER_MINUTE"] = "100000000"  # noqa: S105

from bench.stack import _create_database  # noqa: E402

_create_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

from billing import quota  # noqa: E402
from billing.models import Plan, UsagePeriod, UsageRecord  # noqa: E402
from inference import presence  # noqa: E402
from inference.models import Prediction  # noqa: E402
from inference.services import PredictionRequest, admit  # noqa: E402
from models_hub.demo import load_demo_catalog  # noqa: E402
from portal.auth import ALL_SCOPES, Principal  # noqa: E402
from portal.models import Organization  # noqa: E402
from portal.redis_client import sync_client  # noqa: E402

WORKER = "bench-admission@host"
REQUEST = PredictionRequest("echo", {"prompt": "the quick brown fox", "max_new_tokens": 16})


def setup() -> Principal:
    call_command("migrate", verbosity=0)
    load_demo_catalog()
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench-admission@example.com")
    org, _ = Organization.objects.get_or_create(slug="bench-admission", defaults={"name": "B"})
    return Principal(org=org, user=user, token=None, scopes=ALL_SCOPES)


def reset(org: Organization) -> None:
    UsageRecord.objects.filter(org=org).delete()
    UsagePeriod.objects.filter(org=org).delete()
    Prediction.objects.filter(org=org).delete()
    sync_client().delete("cpu")  # the broker queue of the tasks nobody runs
    # Presence expires after PRESENCE_TTL_SECONDS: renewed before every round.
    presence.announce(WORKER, ["cpu", "default"])


@contextmanager
def mode(name: str):
    Plan.objects.all().delete()
    saved = (quota.check_entitlement, quota.reserve, quota.settle)
    if name == "off":
        quota.check_entitlement = lambda org, listing: None
        quota.reserve = lambda prediction, listing: None
    elif name == "enforced":
        Plan.objects.create(
            slug="bench", name="Bench", is_default=True, tasks=["text-generation"],
            included_requests=10**9, included_tokens=10**12, rate_limit_per_minute=10**9,
        )  # fmt: skip
    try:
        yield
    finally:
        quota.check_entitlement, quota.reserve, quota.settle = saved


def one_round(principal: Principal, clients: int, seconds: float) -> float:
    counts = [0] * clients
    start = threading.Barrier(clients + 1, timeout=60)
    deadline: list[float] = []

    def loop(i: int) -> None:
        try:
            admit(principal, REQUEST)  # warm the thread's connection
            start.wait()
            while time.perf_counter() < deadline[0]:
                admit(principal, REQUEST)
                counts[i] += 1
        finally:
            connections.close_all()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline.append(time.perf_counter() + seconds)
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    principal = setup()
    results: dict[str, list[float]] = {}
    # Interleaved rounds, so drift (autovacuum, cache warmth) affects every mode alike.
    for _ in range(args.rounds):
        for name in ("off", "ledger", "enforced"):
            with mode(name):
                reset(principal.org)
                results.setdefault(name, []).append(
                    one_round(principal, args.clients, args.seconds)
                )
    reset(principal.org)
    presence.withdraw(WORKER, ["cpu", "default"])
    print(f"admission, {args.clients} concurrent clients, {args.rounds} x {args.seconds}s")
    medians = {}
    for name, values in results.items():
        medians[name] = statistics.median(values)
        print(
            f"  {name:9} {medians[name]:8.1f} admissions/s "
            f"(min {min(values):.1f}, max {max(values):.1f})"
        )
    print(f"  enforced / off = {medians['enforced'] / medians['off']:.2f}")
    print(f"  ledger / off   = {medians['ledger'] / medians['off']:.2f}")


if __name__ == "__main__":
    main()
