"""The publisher's earnings in the browser (issue #13): the summary, payouts and latest
ledger rows on `/publisher/` and the whole ledger as CSV (`/publisher/ledger.csv`), for
owners and admins only; a member sees the onboarding status alone, and another org's
caller never sees this org's money."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from billing.models import Payout, RoyaltyEntry
from portal.models import Role

pytestmark = pytest.mark.django_db

PAGE = "/publisher/"
CSV_URL = "/publisher/ledger.csv"
# Amounts that appear nowhere but on this org's page: this month's entry, and the balance
# (100.5 + 12.345678 + 0.000001 - 0.25 earned, less 26.50 paid and 30 being paid).
THIS_MONTH = "12.345678"
BALANCE = "56.095679"


def entry(org, share: str, when: datetime, reference: str, listing=None, kind="usage"):
    share_d = Decimal(share)
    made = RoyaltyEntry.objects.create(
        publisher=org, listing=listing, kind=kind, reference=reference,
        customer_charge=share_d * 2, publisher_share=share_d, platform_fee=share_d,
        fee_percent=Decimal(50),
    )  # fmt: skip
    RoyaltyEntry.objects.filter(pk=made.pk).update(created_at=when)
    return made


def payout(org, month: date, amount: str, **fields) -> Payout:
    made = Payout.objects.create(
        publisher=org, period_start=month, amount=Decimal(amount),
        cutoff=datetime(month.year, month.month + 1, 1, tzinfo=UTC), **fields,
    )  # fmt: skip
    Payout.objects.filter(pk=made.pk).update(
        created_at=datetime(month.year, month.month + 1, 8, tzinfo=UTC)
    )
    return made


@pytest.fixture
def ledger(org, echo, outsider_org, settings):
    settings.PLATFORM_FEE_PERCENT = Decimal("17.5")
    entry(org, "100.5", datetime(2025, 1, 5, tzinfo=UTC), "a", echo)
    entry(org, "0.000001", datetime(2025, 1, 20, tzinfo=UTC), "b")
    entry(org, "-0.25", datetime(2025, 2, 3, tzinfo=UTC), "c", echo, kind="refund")
    entry(org, THIS_MONTH, timezone.now(), "d", echo)
    payout(org, date(2025, 1, 1), "26.50", status="paid", stripe_transfer_id="tr_9")
    payout(org, date(2025, 2, 1), "30", status="failed", error="card_declined: acct_secret")
    entry(outsider_org, "777.25", datetime(2025, 1, 6, tzinfo=UTC), "rival", echo)
    return org


def page(client) -> str:
    response = client.get(PAGE)
    assert response.status_code == 200
    return response.content.decode()


def csv_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_an_owner_sees_summary_payouts_and_ledger(ledger, client_for, owner):
    html = page(client_for(owner, ledger))
    assert f"{THIS_MONTH} USD" in html  # earned this month, and its ledger row
    assert f"{BALANCE} USD" in html
    assert "<dd>25 USD: a smaller balance carries forward</dd>" in html
    assert "7 days after the month ends" in html and "<dd>17.5%</dd>" in html
    assert "2025-01" in html and "26.5 USD" in html and "tr_9" in html
    # A failed transfer says only that it will be retried, never Stripe's error.
    assert "failed, will be retried" in html and "card_declined" not in html
    assert "Transfer for 2025-01 (paid)" in html and "0.000001 USD" in html
    assert "-0.25 USD" in html and "/publisher/ledger.csv" in html
    assert "777.25" not in html  # another publisher's entry


def test_an_admin_sees_them_and_a_member_sees_no_amounts(ledger, client_for, teammate):
    member_html = page(client_for(teammate, ledger))
    assert "Status" in member_html  # the onboarding status is still there
    for amount in (THIS_MONTH, BALANCE, "26.5", "tr_9", "Earnings", "ledger.csv"):
        assert amount not in member_html
    assert client_for(teammate, ledger).get(CSV_URL).status_code == 403

    ledger.memberships.filter(user=teammate).update(role=Role.ADMIN)
    admin = client_for(teammate, ledger)
    assert BALANCE in page(admin)
    assert len(csv_rows(admin.get(CSV_URL))) == 6


def test_an_outsider_sees_only_its_own_org(ledger, client_for, outsider, outsider_org):
    own = client_for(outsider, outsider_org)
    assert "777.25 USD" in page(own)
    assert [row["publisher_share"] for row in csv_rows(own.get(CSV_URL))] == ["777.25"]
    # A session pointing at this org does not make it a member: it falls back to its own.
    for client in (own, client_for(outsider, ledger)):
        html = page(client)
        for amount in (THIS_MONTH, BALANCE, "26.5", "tr_9"):
            assert amount not in html
        assert all(row["publisher_share"] != THIS_MONTH for row in csv_rows(client.get(CSV_URL)))


def test_the_page_lists_the_latest_fifty_rows(org, client_for, owner):
    for n in range(55):
        entry(org, "1", datetime(2025, 3, 1, tzinfo=UTC), f"r{n}")
    html = page(client_for(owner, org))
    assert html.count('data-label="Entry"') == 50
    assert len(csv_rows(client_for(owner, org).get(CSV_URL))) == 55


def test_the_csv_adds_up_to_the_ledger_to_the_last_place(ledger, client_for, owner):
    rows = csv_rows(client_for(owner, ledger).get(CSV_URL))
    assert list(rows[0]) == [
        "created_at", "object", "kind_or_status", "model", "customer_charge", "publisher_share",
        "platform_fee", "fee_percent", "amount", "period", "currency", "stripe_transfer_id",
    ]  # fmt: skip
    entries = [row for row in rows if row["object"] == "royalty_entry"]
    transfers = [row for row in rows if row["object"] == "transfer"]
    assert (len(entries), len(transfers)) == (4, 2)
    expected = RoyaltyEntry.objects.filter(publisher=ledger).aggregate(
        customer_charge=Sum("customer_charge"),
        publisher_share=Sum("publisher_share"),
        platform_fee=Sum("platform_fee"),
    )
    for column, total in expected.items():
        assert sum(Decimal(row[column]) for row in entries) == total
    paid = Payout.objects.filter(publisher=ledger).aggregate(total=Sum("amount"))["total"]
    assert sum(Decimal(row["amount"]) for row in transfers) == paid
    assert "0.000001" in [row["publisher_share"] for row in entries]

    transfer = next(row for row in transfers if row["stripe_transfer_id"])
    assert transfer == {
        "created_at": "2025-02-08T00:00:00Z", "object": "transfer", "kind_or_status": "paid",
        "model": "", "customer_charge": "", "publisher_share": "", "platform_fee": "",
        "fee_percent": "", "amount": "26.5", "period": "2025-01", "currency": "usd",
        "stripe_transfer_id": "tr_9",
    }  # fmt: skip
    refund = next(row for row in entries if row["kind_or_status"] == "refund")
    assert (refund["created_at"], refund["model"], refund["customer_charge"]) == (
        "2025-02-03T00:00:00Z", "echo", "-0.5"
    )  # fmt: skip


def test_a_range(ledger, client_for, owner):
    response = client_for(owner, ledger).get(CSV_URL, {"start": "2025-01-01", "end": "2025-01-31"})
    assert [row["publisher_share"] for row in csv_rows(response)] == ["0.000001", "100.5"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2025-13-01"}, ""),
        ({"start": "yesterday"}, ""),
        ({"start": "2025-10-02", "end": "2025-10-01"}, "end must be after start."),
        ({"start": "2020-01-01", "end": "2026-01-01"}, "The range may span at most 400 days."),
    ],
)
def test_bad_ranges_are_400_with_the_message(ledger, client_for, owner, params, message):
    response = client_for(owner, ledger).get(CSV_URL, params)
    assert response.status_code == 400
    assert response.content.decode().strip()
    assert message in response.content.decode()


def test_commas_quotes_and_formulas_survive_the_csv(ledger, echo, client_for, owner):
    type(echo).objects.filter(pk=echo.pk).update(slug='echo, "the loud one"')
    Payout.objects.filter(stripe_transfer_id="tr_9").update(stripe_transfer_id="=HYPERLINK(1)")
    rows = csv_rows(client_for(owner, ledger).get(CSV_URL))
    assert {row["model"] for row in rows} == {'echo, "the loud one"', ""}
    # A value a spreadsheet would run as a formula is quoted; amounts keep their minus.
    assert "'=HYPERLINK(1)" in {row["stripe_transfer_id"] for row in rows}
    assert "-0.25" in {row["publisher_share"] for row in rows}
