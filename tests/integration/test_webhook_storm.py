"""A Stripe webhook storm against the live web server: 500 correctly signed deliveries,
every event twice, in shuffled order, posted concurrently to two web processes.

The guarantee: however Stripe orders, repeats or parallelises deliveries, every delivery
is answered 2xx (a 5xx would only be retried hours later, leaving the org on the wrong
plan meanwhile), each event is recorded and applied once, and each org ends in the state
of its newest subscription event (older events never overwrite newer state).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import zip_longest

import httpx
import pytest

from billing.models import EventStatus, Plan, StripeEvent, Subscription
from portal import services
from portal.models import Organization
from tests.billing.conftest import make_event, sign
from tests.integration.faults import WebServer, private_env

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]
SECRET = "whsec_storm_test"
ORGS = 25
COPIES = 2  # every event is delivered twice: 25 orgs x 10 events x 2 = 500 deliveries
SENDERS = 16
UNKNOWN_TYPE = "customer.tax_id.created"


@dataclass(frozen=True)
class Expected:
    plan: str
    status: str


@pytest.fixture
def web(transactional_db) -> Iterator[WebServer]:
    # Two processes: Django runs sync views on one thread per process, so concurrent
    # deliveries really overlap only across processes (as across replicas).
    server = WebServer(private_env(STRIPE_WEBHOOK_SECRET=SECRET), workers=2)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def plans(transactional_db) -> dict[str, Plan]:
    return {
        slug: Plan.objects.create(
            slug=slug, name=slug.title(), price_cents=price, stripe_price_id=f"price_{slug}"
        )
        for slug, price in (("pro", 2000), ("team", 10000))
    }


def subscription(org: Organization, index: int, plan: str, status: str, t0: int) -> dict:
    return {
        "id": f"sub_{index}",
        "object": "subscription",
        "customer": f"cus_{index}",
        "status": status,
        "metadata": {"org": str(org.pk), "plan": plan},
        "cancel_at_period_end": False,
        "items": {
            "data": [
                {
                    "price": {"id": f"price_{plan}"},
                    "current_period_start": t0,
                    "current_period_end": t0 + 30 * 86400,
                }
            ]
        },
    }


FINALS = [
    ("customer.subscription.deleted", "team", "canceled"),
    ("customer.subscription.updated", "team", "active"),
    ("customer.subscription.updated", "pro", "past_due"),
]


def lifecycle(org: Organization, index: int, t0: int) -> tuple[list[dict], Expected]:
    """One org's events, one second apart from t0: checkout, trial, payments failing and
    recovering, and a final change; the newest event decides the final state."""
    sub_id = f"sub_{index}"
    invoice = {"id": f"in_{index}", "subscription": sub_id}
    checkout = {
        "id": f"cs_{index}", "object": "checkout.session", "mode": "subscription",
        "client_reference_id": str(org.pk), "customer": f"cus_{index}",
        "subscription": sub_id, "metadata": {"org": str(org.pk), "plan": "pro"},
    }  # fmt: skip
    final_type, final_plan, final_status = FINALS[index % len(FINALS)]
    steps = [
        ("checkout.session.completed", checkout),
        ("customer.subscription.created", subscription(org, index, "pro", "trialing", t0)),
        ("invoice.paid", invoice),
        ("customer.subscription.updated", subscription(org, index, "pro", "active", t0)),
        ("invoice.payment_failed", invoice),
        ("customer.subscription.updated", subscription(org, index, "pro", "past_due", t0)),
        (UNKNOWN_TYPE, {"id": f"txi_{index}", "object": "tax_id"}),
        ("invoice.paid", invoice),
        ("customer.subscription.updated", subscription(org, index, "team", "active", t0)),
        (final_type, subscription(org, index, final_plan, final_status, t0)),
    ]
    events = [
        make_event(type_, obj, created=t0 + n, id_=f"evt_{index}_{n}")
        for n, (type_, obj) in enumerate(steps)
    ]
    return events, Expected(final_plan, final_status)


def storm_order(unique: list[dict], rng: random.Random) -> list[dict]:
    """Every event COPIES times, shuffled within each org's burst (the senders work on
    one org's events at once, as Stripe sends a new subscription's events within a
    second), and a few bursts interleaved: an org's first events race each other."""
    by_org: dict[str, list[dict]] = {}
    for event in unique:
        by_org.setdefault(event["id"].rsplit("_", 1)[0], []).append(event)
    bursts = []
    for events in by_org.values():
        burst = events * COPIES
        rng.shuffle(burst)
        bursts.append(burst)
    rng.shuffle(bursts)
    # Pairs of bursts merged, so two orgs' events are also in flight together.
    deliveries = []
    for first, second in zip_longest(bursts[::2], bursts[1::2], fillvalue=[]):
        merged = first + second
        rng.shuffle(merged)
        deliveries += merged
    return deliveries


def deliver(client: httpx.Client, event: dict) -> tuple[str, int, str]:
    body = json.dumps(event)
    response = client.post(
        "/billing/stripe/webhook/",
        content=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": sign(body, secret=SECRET)},
    )
    outcome = response.json().get("outcome", "") if response.status_code == 200 else ""
    return event["id"], response.status_code, outcome


def test_webhook_storm_applies_each_event_once_and_ends_in_the_newest_state(web, owner, plans):
    orgs = [services.create_org(f"Storm {i}", owner) for i in range(ORGS)]
    t0 = int(time.time()) - 600  # within the signature tolerance: only bodies are signed
    expected: dict[int, Expected] = {}
    unique: list[dict] = []
    for index, org in enumerate(orgs):
        events, expected[org.pk] = lifecycle(org, index, t0)
        unique += events
    deliveries = storm_order(unique, random.Random(8))

    with (
        httpx.Client(base_url=web.base_url, timeout=60) as client,
        ThreadPoolExecutor(max_workers=SENDERS) as pool,
    ):
        results = list(pool.map(lambda event: deliver(client, event), deliveries))

    failures = [(event_id, status) for event_id, status, _ in results if status != 200]
    assert failures == [], f"{len(failures)} deliveries were not answered 200: {failures[:5]}"
    # Each event took effect on exactly one delivery; every other copy was a duplicate.
    applied = Counter(event_id for event_id, _, outcome in results if outcome != "duplicate")
    assert applied == Counter({event["id"]: 1 for event in unique})

    rows = {row.stripe_event_id: row for row in StripeEvent.objects.all()}
    assert set(rows) == {event["id"] for event in unique}
    for event in unique:
        row = rows[event["id"]]
        assert row.attempts == 1
        want = EventStatus.IGNORED if event["type"] == UNKNOWN_TYPE else EventStatus.PROCESSED
        assert row.status == want, (row.stripe_event_id, row.status, row.error)

    final = {
        sub.org_id: Expected(sub.plan.slug, sub.status)
        for sub in Subscription.objects.select_related("plan").filter(org__in=orgs)
    }
    assert final == expected
    # The newest event (the tenth, t0 + 9) is the one each org's row last applied.
    stamps = Subscription.objects.filter(org__in=orgs).values_list("last_event_at", flat=True)
    assert set(stamps) == {t0 + 9}
