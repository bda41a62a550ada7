"""Fixtures for the abuse-limit and sweep tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from billing.checkout import grant_plan
from billing.models import Plan
from models_hub.demo import load_demo_catalog
from models_hub.models import ListingStatus, ModelListing, Task, Visibility
from models_hub.schemas import text_generation_schema
from portal.models import Organization
from tests.livestack import Stack, running_stack

# A listing whose own cap (16) is below what its schema allows (1024): the cap must win.
ECHO_CAP = 16


@pytest.fixture
def echo_listing(db) -> ModelListing:
    listing = ModelListing(
        slug="sec-echo",
        name="Security echo",
        summary="Echo listing for the abuse-limit tests.",
        task=Task.TEXT_GENERATION,
        source="builtin:echo",
        status=ListingStatus.PUBLISHED,
        visibility=Visibility.PUBLIC,
        max_context=4096,
        max_params={"max_new_tokens": ECHO_CAP},
        input_schema=text_generation_schema(max_new_tokens=1024),
        example_input={"prompt": "hello"},
        options={"tokens_per_second": 0},
    )
    listing.full_clean()
    listing.save()
    return listing


# --- A live stack for the attacker's-view tests of waits, streams and sockets -------------

# Small pools, so that anything holding a pooled Redis or database connection while it
# waits exhausts them within a few requests; a short slot lease and principal re-check,
# so that leaks and revocations show within seconds.
LIVE_ENV = {
    "REDIS_MAX_CONNECTIONS": "4",
    "REDIS_POOL_WAIT_SECONDS": "3",
    "DB_POOL_MAX_SIZE": "4",
    "CONCURRENCY_SLOT_LEASE_SECONDS": "3",
    "STREAM_PRINCIPAL_RECHECK_SECONDS": "1",
}


@pytest.fixture(scope="session")
def live_stack(django_db_setup, django_db_blocker) -> Iterator[Stack]:
    with running_stack(django_db_blocker, extra_env=LIVE_ENV) as running:
        yield running


@pytest.fixture
def catalog(transactional_db) -> dict[str, ModelListing]:
    return {listing.slug: listing for listing in load_demo_catalog()}


@pytest.fixture
def capped_plan(catalog) -> Callable[..., Plan]:
    """Grants an org a plan with the given concurrency caps (the demo echo model included)."""

    def grant(org: Organization, *, waits: int, streams: int) -> Plan:
        plan, _ = Plan.objects.update_or_create(
            slug=f"capped-{waits}-{streams}",
            defaults={
                "name": "Capped",
                "rate_limit_per_minute": 100_000,
                "tasks": [Task.TEXT_GENERATION],
                "max_concurrent_waits": waits,
                "max_concurrent_streams": streams,
            },
        )
        grant_plan(org, plan, None)
        return plan

    return grant
