"""Spend cap and allowance alerts (issue #12): 50, 80 and 100% of each limit fire once per
period, however many settlements cross them at once; owners (only) get an e-mail, and the
org's account webhook gets a signed `billing.threshold` event, judged by the
`standardwebhooks` library, never by our own signer. No prediction runs here: the
period's counters are set directly, as settlement leaves them.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connections, transaction
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from billing import alerts
from billing.models import BillingAlert, UsagePeriod
from billing.tasks import deliver_billing_alert
from portal import account_webhooks
from portal.models import AuditLog, Organization, Role
from tests.conftest import WebhookReceiver, make_user

pytestmark = pytest.mark.django_db

NOVEMBER = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
DECEMBER = (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
D = Decimal


def new_period(org: Organization, start_end=NOVEMBER) -> UsagePeriod:
    return UsagePeriod.objects.create(org=org, start=start_end[0], end=start_end[1])


def settle(period: UsagePeriod, *, allowance_used="0", credits="0", overage="0") -> UsagePeriod:
    """The counters as a settlement leaves them, read back fresh."""
    UsagePeriod.objects.filter(pk=period.pk).update(
        allowance_used=D(allowance_used), credits_used=D(credits), overage_used=D(overage)
    )
    return UsagePeriod.objects.get(pk=period.pk)


def fired(org) -> list[tuple[str, int]]:
    rows = BillingAlert.objects.filter(org=org).order_by("subject", "threshold")
    return list(rows.values_list("subject", "threshold"))


@pytest.fixture
def period(org) -> UsagePeriod:
    return new_period(org)


@pytest.fixture
def check(django_capture_on_commit_callbacks, monkeypatch):
    """check_thresholds in a transaction, as settlement calls it, running its on_commit
    work; the webhook task is recorded, not sent to the broker."""
    queued: list[int] = []
    monkeypatch.setattr(deliver_billing_alert, "delay", queued.append)

    def run(period, allowance=None, spend_cap=None) -> list[BillingAlert]:
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            return alerts.check_thresholds(period, allowance, spend_cap)

    run.queued = queued
    return run


# --- When alerts fire ---------------------------------------------------------------


def test_each_threshold_fires_once_per_period(org, period, check, mailoutbox):
    assert check(settle(period, allowance_used="49.99"), D(100)) == []
    [half] = check(settle(period, allowance_used="50"), D(100))
    assert (half.subject, half.threshold, half.limit, half.used) == ("allowance", 50, 100, 50)
    assert half.period_start == period.start
    assert check(settle(period, allowance_used="79.999999"), D(100)) == []
    assert [a.threshold for a in check(settle(period, allowance_used="80"), D(100))] == [80]
    assert [a.threshold for a in check(settle(period, allowance_used="100"), D(100))] == [100]
    for _ in range(3):
        assert check(settle(period, allowance_used="150"), D(100)) == []
    assert fired(org) == [("allowance", 50), ("allowance", 80), ("allowance", 100)]
    assert len(mailoutbox) == 3  # one owner, three alerts


def test_one_jump_past_100_fires_all_three(org, period, check, mailoutbox):
    created = check(settle(period, credits="7", overage="5"), None, D(10))
    assert [(a.subject, a.threshold) for a in created] == [
        ("spend_cap", 50),
        ("spend_cap", 80),
        ("spend_cap", 100),
    ]
    assert {a.used for a in created} == {D(12)}  # spent = credits + overage
    assert [m.subject for m in mailoutbox] == [
        "Model Portal: 50% of your monthly spend cap used (Acme AI)",
        "Model Portal: 80% of your monthly spend cap used (Acme AI)",
        "Model Portal: 100% of your monthly spend cap used (Acme AI)",
    ]


def test_both_subjects_fire_independently(org, period, check):
    check(settle(period, allowance_used="20", credits="3"), D(25), D(5))
    assert fired(org) == [
        ("allowance", 50),
        ("allowance", 80),
        ("spend_cap", 50),
    ]
    # Allowance used is not spending: the cap counts credits and overage only.
    check(settle(period, allowance_used="25", credits="3"), D(25), D(5))
    assert ("spend_cap", 80) not in fired(org) and ("allowance", 100) in fired(org)


def test_a_new_period_fires_again(org, period, check, mailoutbox):
    check(settle(period, overage="10"), None, D(10))
    december = new_period(org, DECEMBER)
    assert check(december, None, D(10)) == []  # nothing spent yet in December
    created = check(settle(december, overage="6"), None, D(10))
    assert [(a.threshold, a.period_start) for a in created] == [(50, DECEMBER[0])]
    assert len(mailoutbox) == 4


@pytest.mark.parametrize("limit", [None, D(0), D("-5")])
def test_no_limit_no_alert(org, period, check, mailoutbox, limit):
    assert check(settle(period, allowance_used="500", overage="500"), limit, limit) == []
    assert not BillingAlert.objects.exists() and mailoutbox == []


def test_other_orgs_are_counted_apart(org, outsider_org, period, check):
    check(settle(period, overage="10"), None, D(10))
    theirs = settle(new_period(outsider_org), overage="5")
    assert [a.threshold for a in check(theirs, None, D(10))] == [50]
    assert fired(outsider_org) == [("spend_cap", 50)]


def test_a_lost_race_leaves_the_callers_transaction_intact(org, period, monkeypatch):
    """Another settlement created the row after this one looked (the read cannot see it):
    the insert conflicts in its savepoint; the caller's own writes still commit."""
    BillingAlert.objects.create(
        org=org, period_start=period.start, subject="spend_cap", threshold=50, limit=10, used=5
    )
    real_filter = BillingAlert.objects.filter
    monkeypatch.setattr(BillingAlert.objects, "filter", lambda **kw: real_filter(pk=None))
    with transaction.atomic():
        created = alerts.check_thresholds(settle(period, overage="9"), None, D(10))
        UsagePeriod.objects.filter(pk=period.pk).update(requests=7)  # still usable
    monkeypatch.undo()
    assert [a.threshold for a in created] == [80]
    assert UsagePeriod.objects.get(pk=period.pk).requests == 7
    assert BillingAlert.objects.filter(org=org).count() == 2


@pytest.mark.django_db(transaction=True)
def test_twenty_settlements_at_once_fire_each_threshold_exactly_once(
    org, period, mailoutbox, monkeypatch
):
    """Twenty transactions cross all three thresholds of both limits at the same moment,
    each holding its transaction open a little after the check so that the inserts
    collide: one row and one e-mail per threshold, and every caller commits."""
    monkeypatch.setattr(deliver_billing_alert, "delay", lambda *a: None)
    lost = []
    create_once = alerts._create_once

    def counting(*args):
        alert = create_once(*args)
        if alert is None:
            lost.append(args[2])
        return alert

    monkeypatch.setattr(alerts, "_create_once", counting)
    fresh = settle(period, allowance_used="100", overage="10")
    clients = 20
    barrier = threading.Barrier(clients)

    def settlement(_: int) -> int:
        try:
            with transaction.atomic():
                barrier.wait(timeout=30)
                created = alerts.check_thresholds(fresh, D(100), D(10))
                AuditLog.objects.create(org=org, action="test.settled")  # still usable
                time.sleep(0.2)
                return len(created)
        finally:
            connections.close_all()

    connections.close_all()  # back to the pool (20 at most): one for each settlement
    with ThreadPoolExecutor(max_workers=clients) as pool:
        created = list(pool.map(settlement, range(clients)))
    assert sum(created) == 6
    assert lost, "no insert conflicted: the race was not exercised"
    assert AuditLog.objects.filter(action="test.settled").count() == clients
    assert fired(org) == [
        ("allowance", 50),
        ("allowance", 80),
        ("allowance", 100),
        ("spend_cap", 50),
        ("spend_cap", 80),
        ("spend_cap", 100),
    ]
    assert len(mailoutbox) == 6
    assert len({m.subject for m in mailoutbox}) == 6


# --- Who is told by e-mail ----------------------------------------------------------


def test_only_active_owners_get_the_email(
    org, owner, teammate, outsider, period, check, mailoutbox
):
    second_owner = make_user("second-owner@example.com")
    org.memberships.create(user=second_owner, role=Role.OWNER)
    admin = make_user("admin@example.com")
    org.memberships.create(user=admin, role=Role.ADMIN)
    gone = make_user("former-owner@example.com")
    org.memberships.create(user=gone, role=Role.OWNER)
    gone.is_active = False
    gone.save(update_fields=["is_active"])
    check(settle(period, overage="8"), None, D(10))  # 50 and 80
    assert sorted(tuple(m.to) for m in mailoutbox) == [
        ("owner@example.com",),
        ("owner@example.com",),
        ("second-owner@example.com",),
        ("second-owner@example.com",),
    ]
    message = mailoutbox[0]
    assert "Acme AI has used 50% of its spend cap" in message.body
    assert "8 of 10 USD" in message.body
    assert "/billing/" in message.body and "2026-12-01" in message.body
    assert not message.cc and not message.bcc


def test_a_failing_mail_server_does_not_stop_the_webhook(org, owner, period, check, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("mail server down")

    monkeypatch.setattr(alerts, "email_owners", refuse)
    account_webhooks.set_account_webhook(org, owner, "https://93.184.215.14/hook", None)
    [alert] = check(settle(period, overage="5"), None, D(10))
    assert check.queued == [alert.pk]


# --- The account webhook ------------------------------------------------------------


@pytest.fixture
def hooked(org, owner, receiver) -> WebhookReceiver:
    account_webhooks.set_account_webhook(org, owner, receiver.url, ["billing.threshold"])
    return receiver


def test_the_event_is_delivered_signed_and_verifies_with_the_library(
    org, period, check, hooked, settings
):
    [alert] = check(settle(period, allowance_used="40.5"), D("81"))
    assert check.queued == [alert.pk]
    assert deliver_billing_alert.apply(args=(alert.pk,)).successful()
    [(headers, body)] = hooked.received
    event = Webhook(org.webhook_secret).verify(body, headers)
    assert event == {
        "type": "billing.threshold",
        "timestamp": alert.created_at.isoformat().replace("+00:00", "Z"),
        "data": {
            "subject": "allowance",
            "threshold": 50,
            "limit": "81",
            "used": "40.5",
            "currency": settings.PORTAL_CURRENCY,
            "period": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
        },
    }
    assert json.loads(body) == event
    assert headers["content-type"] == "application/json"
    # Another org's secret does not verify it.
    other = Organization.objects.create(slug="other", name="Other")
    with pytest.raises(WebhookVerificationError):
        Webhook(other.webhook_secret).verify(body, headers)


def test_failures_are_retried_with_the_same_webhook_id(org, period, check, hooked):
    [alert] = check(settle(period, overage="5"), None, D(10))
    hooked.statuses = [500, 503]
    assert deliver_billing_alert.apply(args=(alert.pk,)).successful()
    assert len(hooked.received) == 3
    [webhook_id] = {headers["webhook-id"] for headers, _ in hooked.received}
    assert webhook_id == alerts.message_id(alert) and webhook_id.startswith("msg_")
    for headers, body in hooked.received:
        Webhook(org.webhook_secret).verify(body, headers)


def test_a_url_refused_at_delivery_is_dropped_not_retried(
    org, period, check, hooked, settings, monkeypatch
):
    [alert] = check(settle(period, overage="5"), None, D(10))
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False  # production: loopback is refused now
    attempts = []
    real_deliver = alerts.deliver
    monkeypatch.setattr(alerts, "deliver", lambda pk: attempts.append(pk) or real_deliver(pk))
    result = deliver_billing_alert.apply(args=(alert.pk,))
    assert result.successful()  # a WebhookRefused left to Celery would fail the task
    assert attempts == [alert.pk]
    assert hooked.received == []


def test_nothing_is_queued_without_a_webhook_for_the_event(org, owner, period, check):
    check(settle(period, overage="5"), None, D(10))
    account_webhooks.set_account_webhook(
        org, owner, "https://93.184.215.14/h", ["model.deprecated"]
    )
    check(settle(period, overage="8"), None, D(10))
    account_webhooks.set_account_webhook(org, owner, None, None)
    check(settle(period, overage="10"), None, D(10))
    assert len(fired(org)) == 3
    assert check.queued == []


def test_a_webhook_removed_before_delivery_sends_nothing(org, owner, period, check, hooked):
    [alert] = check(settle(period, overage="5"), None, D(10))
    account_webhooks.set_account_webhook(org, owner, "", None)
    assert deliver_billing_alert.apply(args=(alert.pk,)).successful()
    assert hooked.received == []
