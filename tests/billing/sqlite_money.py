"""Paid admissions on SQLite, the embedded default, where the reservation's writes run
one statement at a time (billing/counters.py): run by tests/billing/test_counters.py as

    python -m tests.billing.sqlite_money <database file>

with REDIS_URL set; prints what it saw as JSON."""

from __future__ import annotations

from decimal import Decimal

from tests.sqlite_scenario import main


def scenario() -> dict[str, object]:
    from django.contrib.auth import get_user_model

    from billing import credits, prices
    from billing.models import Plan, UsagePeriod, UsageRecord
    from inference import presence
    from inference.admission import PredictionRequest, admit
    from models_hub.demo import load_demo_catalog
    from portal.auth import ALL_SCOPES, Principal
    from portal.errors import PaymentRequired
    from portal.models import Organization

    load_demo_catalog()
    echo = next(listing for listing in load_demo_catalog() if listing.slug == "echo")
    # Worst case of one call below: 0.025 (tests/billing/test_quota.py).
    prices.set_price(echo, input_per_million="1000", output_per_million="2000", per_request="0.001")
    Plan.objects.create(slug="free", name="Free", is_default=True, allowance=Decimal(0))
    user = get_user_model().objects.create(username="sqlite@example.com")
    org = Organization.objects.create(slug="sqlite", name="S", free_allowance=True)
    credits.grant_credits(org, "0.03")
    presence.announce("sqlite-money@host", ["cpu", "default"])
    principal = Principal(org=org, user=user, token=None, scopes=ALL_SCOPES)
    request = PredictionRequest("echo", {"prompt": "hello there", "max_new_tokens": 10})
    admitted = admit(principal, request)
    try:
        admit(principal, request)
        refused = None
    except PaymentRequired as exc:
        refused = exc.code
    presence.withdraw("sqlite-money@host", ["cpu", "default"])
    record = UsageRecord.objects.get()
    return {
        "entry_for": record.prediction_id == admitted.id,
        "reserved_credits": str(record.reserved_credits),
        "account_reserved": str(credits.account_for(org).credits_reserved),
        "period_paid_reserved": str(UsagePeriod.objects.get(org=org).paid_reserved),
        "refused": refused,
    }


if __name__ == "__main__":
    main(scenario)
