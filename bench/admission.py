"""Admission benchmark: inference.admission.admit from 50 concurrent threads, on PostgreSQL
and Redis, with billing in three modes:

- off:      the billing hooks replaced by no-ops (admission as it was before plans)
- ledger:   no plans configured: unmetered, but every admission is reserved in the ledger
- enforced: a plan with an unlimited allowance and a rate limit: entitlement check, Redis
            plan rate limit, the worst case reserved under the org's period row lock,
            ledger row
- money:    issue #12's full money layer: echo priced per token and per request, a plan
            with no allowance, so that every call is paid from prepaid credits (held by
            conditional UPDATE) under an org spend cap

Reported: admissions per second (median of rounds, min-max), and each mode / off (the
goal for money is at least 0.8).
The task send goes to the Redis broker as usual; no worker consumes it. Runs in a fresh
PostgreSQL database (see bench/stack.py), dropped afterwards; Redis is REDIS_URL
(default db 10).

    .venv/bin/python bench/admission.py [--clients 50] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import fresh_database  # noqa: E402

WORKER = "bench-admission@host"
MODES = ("off", "ledger", "enforced", "money")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"
ADMISSION_DATABASE_SUFFIX = "_admission"


def configure(database_url: str) -> None:
    """Django for this process, on the bench's own database and Redis; once per process."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
    # The tasks it sends must land in the bench's Redis, not some real worker's queue.
    os.environ["CELERY_BROKER_URL"] = os.environ["REDIS_URL"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DB_POOL_MAX_SIZE", "60")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # The benchmark measures admission, not the per-user abuse limit.
    os.environ["DEFAULT_TOKEN_RATE_LIMIT_PER_MINUTE"] = "100000000"  # noqa: S105
    import django

    django.setup()


def setup() -> Any:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from models_hub.demo import load_demo_catalog
    from portal.auth import ALL_SCOPES, Principal
    from portal.models import Organization

    call_command("migrate", verbosity=0)
    load_demo_catalog()
    user, _ = get_user_model().objects.get_or_create(username="bench-admission@example.com")
    # The free allowance is personal: the bench org has it explicitly, as a personal one would.
    org, _ = Organization.objects.get_or_create(
        slug="bench-admission", defaults={"name": "B", "free_allowance": True}
    )
    return Principal(org=org, user=user, token=None, scopes=ALL_SCOPES)


def reset(org: Any) -> None:
    from billing.models import BillingAccount, UsagePeriod, UsageRecord
    from inference import presence
    from inference.models import Prediction
    from portal.redis_client import sync_client

    BillingAccount.objects.filter(org=org).update(credits_reserved=0)
    UsageRecord.objects.filter(org=org).delete()
    UsagePeriod.objects.filter(org=org).delete()
    Prediction.objects.filter(org=org).delete()
    sync_client().delete("cpu")  # the broker queue of the tasks nobody runs
    # Presence expires after PRESENCE_TTL_SECONDS: renewed before every round.
    presence.announce(WORKER, ["cpu", "default"])


def _money_on(org: Any) -> None:
    from decimal import Decimal

    from billing import caps, credits, prices
    from billing.models import BillingAccount, Plan
    from models_hub.models import ModelListing

    Plan.objects.create(
        slug="bench", name="Bench", is_default=True, tasks=["text-generation"],
        allowance=Decimal(0), rate_limit_per_minute=10**9,
    )  # fmt: skip
    echo = ModelListing.objects.get(slug="echo")
    if not prices.price_at(echo).pk:
        prices.set_price(
            echo, input_per_million="0.5", output_per_million="1.5", per_request="0.001"
        )
    # Far more than a run holds: every round starts with nothing reserved (see `reset`).
    if credits.account_for(org).balance < 1000:
        credits.grant_credits(org, "100000", note="bench")
    caps.set_spend_cap(org, "900000")
    BillingAccount.objects.filter(org=org).update(credits_reserved=0)


def _money_off(org: Any) -> None:
    from billing import caps

    caps.set_spend_cap(org, None)


@contextmanager
def mode(name: str, org: Any) -> Iterator[None]:
    from billing import quota
    from billing.models import Plan

    Plan.objects.all().delete()
    saved = (quota.check_entitlement, quota.rate_limits, quota.reserve, quota.settle)
    if name == "off":
        quota.check_entitlement = lambda *args: None
        quota.rate_limits = lambda *args: []
        quota.reserve = lambda *args: None
    elif name == "enforced":
        Plan.objects.create(
            slug="bench", name="Bench", is_default=True, tasks=["text-generation"],
            allowance=None, rate_limit_per_minute=10**9,
        )  # fmt: skip
    elif name == "money":
        _money_on(org)
    try:
        yield
    finally:
        quota.check_entitlement, quota.rate_limits, quota.reserve, quota.settle = saved
        if name == "money":
            _money_off(org)


def one_round(principal: Any, clients: int, seconds: float) -> float:
    from django.db import connections

    from inference.admission import PredictionRequest, admit

    request = PredictionRequest("echo", {"prompt": "the quick brown fox", "max_new_tokens": 16})
    counts = [0] * clients
    start = threading.Barrier(clients + 1, timeout=60)
    deadline: list[float] = []

    def loop(i: int) -> None:
        try:
            admit(principal, request)  # warm the thread's connection
            start.wait()
            while time.perf_counter() < deadline[0]:
                admit(principal, request)
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


def measure(clients: int, seconds: float, rounds: int) -> dict[str, list[float]]:
    """Admissions/s of every round, per mode."""
    from inference import presence

    principal = setup()
    results: dict[str, list[float]] = {name: [] for name in MODES}
    # Interleaved rounds, so drift (autovacuum, cache warmth) affects every mode alike.
    for _ in range(rounds):
        for name in MODES:
            with mode(name, principal.org):
                reset(principal.org)
                results[name].append(one_round(principal, clients, seconds))
    reset(principal.org)
    presence.withdraw(WORKER, ["cpu", "default"])
    return results


def report(results: dict[str, list[float]], clients: int, seconds: float, rounds: int) -> None:
    print(f"admission, {clients} concurrent clients, {rounds} x {seconds}s")
    medians = {}
    for name, values in results.items():
        medians[name] = statistics.median(values)
        print(
            f"  {name:9} {medians[name]:8.1f} admissions/s "
            f"(min {min(values):.1f}, max {max(values):.1f})"
        )
    print(f"  enforced / off = {medians['enforced'] / medians['off']:.2f}")
    print(f"  ledger / off   = {medians['ledger'] / medians['off']:.2f}")
    print(f"  money / off    = {medians['money'] / medians['off']:.2f}", flush=True)


def close_connections() -> None:
    """Close the pool's connections before the database is dropped under them."""
    from django.db import connections

    for connection in connections.all():
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()


def run(
    clients: int = 50, seconds: float = 5, rounds: int = 3, database_url: str | None = None
) -> dict[str, list[float]]:
    """Once per process (Django is configured here). Without `database_url`, in a fresh
    database made and dropped here; with one, the caller owns (and drops) it."""
    if database_url is None:
        with fresh_database(ADMISSION_DATABASE_SUFFIX) as url:
            return run(clients, seconds, rounds, url)
    configure(database_url)
    try:
        results = measure(clients, seconds, rounds)
    finally:
        close_connections()
    report(results, clients, seconds, rounds)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run(args.clients, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
